//! The shelf's access control as the console keeps it: named lists, the wire-side
//! administration policy and each LUN's rights. The YAML's `access:` sections seed it; once
//! the console changes anything it is written to `state_dir/access.json`, which wins over the
//! YAML at every later start (as the LUN book does for LUNs).

use super::persist::{store_json, PersistError};
use ethershelf_config::access::{LunAccess, ShelfAccess};
use ethershelf_config::Config;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// File name of the access book inside `state_dir`.
pub const ACCESS_FILE: &str = "access.json";

/// Shelf-wide settings and per-LUN rights.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessBook {
    /// Lists, wire-side policy, ethers file.
    #[serde(default)]
    pub shelf: ShelfAccess,
    /// Rights by slot (a slot absent: every right open).
    #[serde(default)]
    pub luns: BTreeMap<u8, LunAccess>,
}

impl AccessBook {
    /// Where the access book of `config` lives.
    pub fn path(config: &Config) -> PathBuf {
        config.state_dir.join(ACCESS_FILE)
    }

    /// The YAML's access settings.
    pub fn from_config(config: &Config) -> AccessBook {
        AccessBook {
            shelf: config.access.clone(),
            luns: config
                .luns
                .iter()
                .filter(|l| l.access != LunAccess::default())
                .map(|l| (l.slot, l.access.clone()))
                .collect(),
        }
    }

    /// The saved book if the console ever changed access control, else the YAML's.
    pub fn load_or_config(config: &Config) -> Result<AccessBook, PersistError> {
        let path = AccessBook::path(config);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| PersistError::Corrupt {
                path,
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(AccessBook::from_config(config))
            }
            Err(source) => Err(PersistError::Io { path, source }),
        }
    }

    /// Writes the book atomically.
    pub fn store(&self, path: &Path) -> Result<(), PersistError> {
        store_json(self, path)
    }

    /// The rights of LUN `slot`.
    pub fn lun(&self, slot: u8) -> LunAccess {
        self.luns.get(&slot).cloned().unwrap_or_default()
    }
}

fn yaml_list(entries: &[String]) -> String {
    let quoted: Vec<String> = entries.iter().map(|e| format!("{e:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

impl AccessBook {
    /// The shelf's `access:` section as YAML (empty when everything is at its default).
    pub fn export_shelf_yaml(&self) -> String {
        use std::fmt::Write as _;
        if self.shelf == ShelfAccess::default() {
            return String::new();
        }
        let mut y = String::from("access:\n");
        let _ = writeln!(y, "  wire_admin: {}", self.shelf.wire_admin.name());
        let _ = writeln!(y, "  ethers: {:?}", self.shelf.ethers.display().to_string());
        if !self.shelf.lists.is_empty() {
            let _ = writeln!(y, "  lists:");
            for (name, entries) in &self.shelf.lists {
                let _ = writeln!(y, "    {name}: {}", yaml_list(entries));
            }
        }
        y
    }

    /// LUN `slot`'s `access:` block as YAML, indented for a `luns:` item.
    pub fn export_lun_yaml(&self, slot: u8) -> String {
        use std::fmt::Write as _;
        let Some(lun) = self.luns.get(&slot) else {
            return String::new();
        };
        let mut y = String::from("    access:\n");
        for (right, entries) in &lun.rights {
            let _ = writeln!(y, "      {}: {}", right.name(), yaml_list(entries));
        }
        if let Some(w) = lun.wire_admin {
            let _ = writeln!(y, "      wire_admin: {}", w.name());
        }
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ethershelf_config::access::{Right, WireAdmin};

    #[test]
    fn exported_access_parses_back_to_the_same_book() {
        let dir = std::env::temp_dir().join(format!("es-access-book-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ethers = dir.join("ethers");
        std::fs::write(&ethers, "52:54:00:00:00:09 backup\n").unwrap();
        let mut book = AccessBook::default();
        book.shelf.wire_admin = WireAdmin::Refuse;
        book.shelf.ethers = ethers.clone();
        book.shelf.lists.insert(
            "hv".into(),
            vec!["52:54:00:00:00:01".into(), "backup".into()],
        );
        let mut lun = LunAccess::default();
        lun.rights.insert(Right::Write, vec!["hv".into()]);
        lun.rights.insert(Right::ConfigSet, vec![]);
        lun.wire_admin = Some(WireAdmin::Accept);
        book.luns.insert(0, lun);
        let yaml = format!(
            "shelf: 1\nports: [{{ interface: sh0 }}]\n{}luns:\n  - slot: 0\n    file: /x\n{}",
            book.export_shelf_yaml(),
            book.export_lun_yaml(0)
        );
        let config = ethershelf_config::parse(&yaml, "export.yaml").unwrap();
        assert_eq!(AccessBook::from_config(&config), book, "{yaml}");
        let path = dir.join(ACCESS_FILE);
        book.store(&path).unwrap();
        let mut config = config;
        config.state_dir = dir.clone();
        config.access = ShelfAccess::default();
        assert_eq!(
            AccessBook::load_or_config(&config).unwrap(),
            book,
            "the saved book wins"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
