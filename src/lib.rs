pub mod junit;
