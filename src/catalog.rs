//! The documented status codes of the API behind the proxy: number, reason,
//! meaning. Defaults are the REV23 page; config can replace the list.
//!
//! The catalog decides how tally cells are *labelled*: a documented code is
//! exposed as itself, anything else as `code="undocumented"`.

use crate::config::{CatalogConfig, ConfigError};
use crate::status;

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub code: u16,
    pub reason: String,
    pub meaning: String,
}

#[derive(Debug, Clone)]
pub struct Catalog {
    entries: Vec<Entry>,
    /// Per tally cell: the documented code it shows as, if any.
    documented_cell: [Option<u16>; status::CELLS],
}

impl Catalog {
    pub fn from_config(cfg: &CatalogConfig) -> Result<Catalog, ConfigError> {
        if cfg.codes.is_empty() {
            return Err(ConfigError::invalid(
                "catalog.codes",
                "must list at least one documented code",
            ));
        }
        let mut entries: Vec<Entry> = Vec::with_capacity(cfg.codes.len());
        let mut documented_cell = [None; status::CELLS];
        for (i, e) in cfg.codes.iter().enumerate() {
            let key = format!("catalog.codes[{i}].code");
            if !(100..=599).contains(&e.code) {
                return Err(ConfigError::invalid(
                    key,
                    format!("{} is not an HTTP status code (100..=599)", e.code),
                ));
            }
            if !status::is_tracked(e.code) {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "{} is not an IANA-registered status code; statuswatch counts \
                         registered codes (and 499) individually and the rest per class",
                        e.code
                    ),
                ));
            }
            if entries.iter().any(|x| x.code == e.code) {
                return Err(ConfigError::invalid(
                    key,
                    format!("{} is listed twice", e.code),
                ));
            }
            if e.reason.trim().is_empty() {
                return Err(ConfigError::invalid(
                    format!("catalog.codes[{i}].reason"),
                    "must not be empty",
                ));
            }
            documented_cell[status::cell_of(e.code)] = Some(e.code);
            entries.push(Entry {
                code: e.code,
                reason: e.reason.clone(),
                meaning: e.meaning.clone(),
            });
        }
        entries.sort_by_key(|e| e.code);
        Ok(Catalog {
            entries,
            documented_cell,
        })
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The documented code a cell is exposed as, or `None` for "undocumented".
    #[inline]
    pub fn documented(&self, cell: usize) -> Option<u16> {
        self.documented_cell[cell]
    }

    pub fn is_documented(&self, code: u16) -> bool {
        (100..=599).contains(&code) && self.documented_cell[status::cell_of(code)] == Some(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CatalogEntry, Config};

    #[test]
    fn default_catalog_is_rev23() {
        let c = Config::defaults().unwrap();
        let cat = Catalog::from_config(&c.catalog).unwrap();
        let codes: Vec<u16> = cat.entries().iter().map(|e| e.code).collect();
        assert_eq!(
            codes,
            vec![200, 201, 400, 401, 402, 403, 404, 409, 451, 500, 503]
        );
        assert!(cat.is_documented(451));
        assert!(!cat.is_documented(429));
        assert!(!cat.is_documented(502));
        assert_eq!(cat.documented(status::cell_of(451)), Some(451));
        assert_eq!(cat.documented(status::cell_of(599)), None);
    }

    fn entry(code: u16) -> CatalogEntry {
        CatalogEntry {
            code,
            reason: "x".into(),
            meaning: String::new(),
        }
    }

    #[test]
    fn rejects_bad_entries_naming_the_key() {
        let bad = CatalogConfig {
            codes: vec![entry(200), entry(200)],
        };
        let e = Catalog::from_config(&bad).unwrap_err().to_string();
        assert!(e.starts_with("catalog.codes[1].code"), "{e}");
        let bad = CatalogConfig {
            codes: vec![entry(299)],
        };
        let e = Catalog::from_config(&bad).unwrap_err().to_string();
        assert!(e.starts_with("catalog.codes[0].code"), "{e}");
        let bad = CatalogConfig { codes: vec![] };
        assert!(Catalog::from_config(&bad).is_err());
    }
}
