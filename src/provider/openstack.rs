#![allow(dead_code)]
mod keystone;
mod settings;
