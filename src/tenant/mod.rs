//! Tenants: which tenant a request belongs to and where its counters live.
//!
//! * [`resolve`]: the rules from `[tenant]` and the tenant a request claims
//!   (header, Host subdomain, path segment, or an upstream response header);
//! * [`registry`]: the bounded, lock-free registry of tenant slots that turns
//!   a claim into counters, folding invalid and over-the-cap tenants into the
//!   reserved labels below;
//! * `recent`: a per-thread memo in front of the registry's shared map;
//! * `slot`: the slot reference both of them hold;
//! * [`redact`](mod@redact): what of an API key may appear in a log line.

mod recent;
pub mod redact;
pub mod registry;
pub mod resolve;
mod slot;

pub use redact::redact;
pub use registry::{Registry, SlotRef, TenantSlot};
pub use resolve::{Claim, ResolverSpec, Source, MAX_LENGTH_CEILING};

/// Reserved label values; real subdomains never contain `_`.
pub const NONE: &str = "__none__";
pub const INVALID: &str = "__invalid__";
pub const OVERFLOW: &str = "__overflow__";
pub const ALL: &str = "__all__";

#[cfg(test)]
mod tests {
    use super::registry::{TenantSlot, RESERVED_NAMES};
    use super::*;
    use crate::config::{Config, TenantConfig};
    use pingora::http::RequestHeader;
    use proptest::prelude::*;
    use std::time::Duration;

    fn spec_with(f: impl FnOnce(&mut TenantConfig)) -> ResolverSpec {
        let mut c = Config::defaults().unwrap().tenant;
        f(&mut c);
        ResolverSpec::from_config(&c).unwrap()
    }

    fn req(path: &str, headers: &[(&str, &[u8])]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", path.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.insert_header(k.to_string(), http::HeaderValue::from_bytes(v).unwrap())
                .unwrap();
        }
        r
    }

    fn label(reg: &Registry, r: SlotRef) -> String {
        reg.name_of(r).unwrap()
    }

    #[test]
    fn header_source_lowercases_and_validates() {
        let spec = spec_with(|_| {});
        let reg = Registry::new(10);
        let r = reg.resolve(&spec, &req("/", &[("X-Tenant-Name", b"MyStudio")]), 0);
        assert_eq!(label(&reg, r), "mystudio");
        let r2 = reg.resolve(&spec, &req("/", &[("x-tenant-name", b"mystudio")]), 0);
        assert_eq!(r, r2);
        assert_eq!(reg.resolve(&spec, &req("/", &[]), 0), SlotRef::NONE);
        assert_eq!(
            reg.resolve(&spec, &req("/", &[("X-Tenant-Name", b"bad_name")]), 0),
            SlotRef::INVALID
        );
        assert_eq!(
            reg.resolve(&spec, &req("/", &[("X-Tenant-Name", b"-x")]), 0),
            SlotRef::INVALID
        );
        assert_eq!(
            reg.resolve(
                &spec,
                &req("/", &[("X-Tenant-Name", "caf\u{e9}".as_bytes())]),
                0
            ),
            SlotRef::INVALID
        );
        let long = "a".repeat(64);
        assert_eq!(
            reg.resolve(&spec, &req("/", &[("X-Tenant-Name", long.as_bytes())]), 0),
            SlotRef::INVALID
        );
        assert_eq!(reg.tracked(), 1);
    }

    #[test]
    fn duplicate_tenant_headers_are_ambiguous() {
        let spec = spec_with(|_| {});
        let reg = Registry::new(10);
        let mut r = req("/", &[("X-Tenant-Name", b"one")]);
        r.append_header("x-tenant-name", "two").unwrap();
        assert_eq!(reg.resolve(&spec, &r, 0), SlotRef::INVALID);
        // Even the same value twice: the request is malformed for us.
        let mut r = req("/", &[("X-Tenant-Name", b"one")]);
        r.append_header("X-Tenant-Name", "one").unwrap();
        assert_eq!(reg.resolve(&spec, &r, 0), SlotRef::INVALID);
        assert_eq!(reg.tracked(), 0);
    }

    #[test]
    fn host_and_path_sources_in_order() {
        let spec = spec_with(|c| {
            c.sources = vec!["host".into(), "path".into(), "header".into()];
        });
        let reg = Registry::new(10);
        let r = reg.resolve(
            &spec,
            &req("/t/pathstudio/x", &[("Host", b"HostStudio.REV23.com:8443")]),
            0,
        );
        assert_eq!(label(&reg, r), "hoststudio");
        let r = reg.resolve(&spec, &req("/t/pathstudio/x", &[("Host", b"rev23.com")]), 0);
        assert_eq!(label(&reg, r), "pathstudio");
        let r = reg.resolve(
            &spec,
            &req(
                "/api/v2/customers",
                &[("Host", b"other.example"), ("X-Tenant-Name", b"hdr")],
            ),
            0,
        );
        assert_eq!(label(&reg, r), "hdr");
        // a nested subdomain is claimed by the host source but is not a label
        let r = reg.resolve(&spec, &req("/", &[("Host", b"a.b.rev23.com")]), 0);
        assert_eq!(r, SlotRef::INVALID);
        assert_eq!(reg.resolve(&spec, &req("/t//x", &[]), 0), SlotRef::NONE);
    }

    #[test]
    fn cap_overflows_and_counts() {
        let spec = spec_with(|c| c.max_tenants = 2);
        let reg = Registry::new(2);
        for name in ["a", "b", "c", "d"] {
            reg.lookup(&spec, name.as_bytes(), 0);
        }
        assert_eq!(reg.tracked(), 2);
        assert_eq!(reg.overflow_total(), 2);
        assert_eq!(reg.lookup(&spec, b"a", 0).idx, 3);
        assert_eq!(reg.lookup(&spec, b"zz", 0), SlotRef::OVERFLOW);
    }

    #[test]
    fn allowlist_folds_unknown_tenants_into_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenants.txt");
        std::fs::write(&path, "# known studios\ninkhouse\nBlackCat  # mixed case\n").unwrap();
        let spec = spec_with(|c| c.allowlist_file = path.to_string_lossy().into());
        let reg = Registry::new(10);
        assert_eq!(label(&reg, reg.lookup(&spec, b"blackcat", 0)), "blackcat");
        assert_eq!(reg.lookup(&spec, b"stranger", 0), SlotRef::OVERFLOW);
        std::fs::write(&path, "bad_name\n").unwrap();
        let mut c = Config::defaults().unwrap().tenant;
        c.allowlist_file = path.to_string_lossy().into();
        let e = ResolverSpec::from_config(&c).unwrap_err().to_string();
        assert!(
            e.starts_with("tenant.allowlist_file") && e.contains(":1:"),
            "{e}"
        );
    }

    #[test]
    fn idle_slots_are_reclaimed_and_references_go_stale() {
        let spec = spec_with(|c| c.idle_ttl = Duration::from_secs(10));
        let reg = Registry::new(10);
        let a = reg.lookup(&spec, b"a", 0);
        reg.slot(a).counters.add(crate::status::Origin::Upstream, 0);
        let b = reg.lookup(&spec, b"b", 0);
        reg.lookup(&spec, b"b", 15);
        assert_eq!(reg.sweep(&spec, 20), 1);
        assert!(!reg.is_current(a));
        assert!(reg.is_current(b));
        assert_eq!(reg.tracked(), 1);
        let a2 = reg.lookup(&spec, b"a", 21);
        assert_eq!(a2.idx, a.idx, "slot is reused");
        assert_ne!(a2.gen, a.gen);
        assert_eq!(reg.slot(a2).counters.total(), 0, "counters start again");
    }

    #[test]
    fn suspension_transitions() {
        let s = TenantSlot::default();
        assert!(s.set_suspended(true));
        assert!(!s.set_suspended(true));
        assert!(!s.set_suspended(false));
        assert!(s.set_suspended(true));
    }

    proptest! {
        #[test]
        fn any_bytes_resolve_to_valid_or_reserved(raw in proptest::collection::vec(any::<u8>(), 0..300)) {
            let spec = spec_with(|c| c.max_tenants = 1000);
            let reg = Registry::new(1000);
            let r = reg.lookup(&spec, &raw, 0);
            let name = reg.name_of(r).unwrap();
            prop_assert!(RESERVED_NAMES.contains(&name.as_str()) || spec.pattern.is_match(&name));
            prop_assert!(name.len() <= 63 || RESERVED_NAMES.contains(&name.as_str()));
        }

        #[test]
        fn any_header_value_resolves(raw in proptest::collection::vec(any::<u8>(), 0..100), host in "[ -~]{0,80}") {
            let spec = spec_with(|c| c.sources = vec!["host".into(), "path".into(), "header".into()]);
            let reg = Registry::new(1000);
            let mut r = RequestHeader::build("GET", b"/", None).unwrap();
            if let Ok(v) = http::HeaderValue::from_bytes(&raw) {
                r.insert_header("X-Tenant-Name", v).unwrap();
            }
            if let Ok(v) = http::HeaderValue::from_str(&host) {
                r.insert_header("Host", v).unwrap();
            }
            let s = reg.resolve(&spec, &r, 0);
            let name = reg.name_of(s).unwrap();
            prop_assert!(RESERVED_NAMES.contains(&name.as_str()) || spec.pattern.is_match(&name));
        }
    }
}
