;; provision dev bundle
(setq inhibit-startup-screen t
      make-backup-files nil
      column-number-mode t)
(global-font-lock-mode 1)
