//! Fuzz tenant resolution: `ResolverSpec::extract` on arbitrary request
//! targets and header bytes, and `Registry::lookup` on arbitrary raw values,
//! against one long-lived registry with a small cap so registration, overflow
//! and sweeping all happen.
//!
//! Properties: never panics; an ambiguous claim (a repeated tenant header)
//! counts as `__invalid__`; the extracted value is a sub-slice of the header,
//! Host or path it came from; a non-reserved slot's name is the trimmed,
//! lower-cased value and passes validation; looking the same value up again
//! gives the same slot; the registry never tracks more than its cap.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use pingora_http::RequestHeader;
use statuswatch::config::Config;
use statuswatch::tenant::{Claim, Registry, ResolverSpec};

const CAP: usize = 16;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    /// Raw tenant value for a direct lookup (any bytes).
    raw: &'a [u8],
    /// Request target (path and query), any bytes.
    target: &'a [u8],
    tenant_header: Option<&'a [u8]>,
    host: Option<&'a [u8]>,
    /// Which sources, in which order (bit-packed permutation choice).
    order: u8,
    now: u32,
    sweep: bool,
}

fn spec(order: u8) -> &'static ResolverSpec {
    static SPECS: OnceLock<Vec<ResolverSpec>> = OnceLock::new();
    let specs = SPECS.get_or_init(|| {
        let base = Config::defaults().expect("defaults").tenant;
        let orders: [&[&str]; 6] = [
            &["header", "host", "path"],
            &["header", "path", "host"],
            &["host", "header", "path"],
            &["host", "path", "header"],
            &["path", "header", "host"],
            &["path", "host", "header"],
        ];
        orders
            .iter()
            .map(|o| {
                let mut t = base.clone();
                t.sources = o.iter().map(|s| s.to_string()).collect();
                t.host_suffix = ".rev23.com".into();
                t.path_prefix = "/t/".into();
                t.max_tenants = CAP;
                ResolverSpec::from_config(&t).expect("spec")
            })
            .collect()
    });
    &specs[order as usize % specs.len()]
}

fn registry() -> &'static Registry {
    static REG: OnceLock<Registry> = OnceLock::new();
    REG.get_or_init(|| Registry::new(CAP))
}

fn within(inner: &[u8], outer: &[u8]) -> bool {
    let (i, o) = (inner.as_ptr() as usize, outer.as_ptr() as usize);
    i >= o && i + inner.len() <= o + outer.len()
}

fuzz_target!(|input: Input| {
    let spec = spec(input.order);
    let reg = registry();

    // Direct lookup of arbitrary bytes.
    let r = reg.lookup(spec, input.raw, input.now);
    if !r.is_reserved() {
        let name = reg.name_of(r).expect("a fresh slot has a name");
        let want = input.raw.trim_ascii().to_ascii_lowercase();
        assert_eq!(
            name.as_bytes(),
            &want[..],
            "slot name is the normalised value"
        );
        assert!(spec.is_valid(&name), "registered an invalid name {name:?}");
        assert_eq!(
            reg.lookup(spec, input.raw, input.now),
            r,
            "lookup is stable"
        );
    }
    assert!(
        reg.tracked() <= CAP,
        "tracked {} > cap {CAP}",
        reg.tracked()
    );

    // Extraction from a request built from arbitrary parts.
    let Ok(mut req) = RequestHeader::build("GET", input.target, None) else {
        return;
    };
    if let Some(v) = input.tenant_header {
        if let Ok(v) = http::HeaderValue::from_bytes(v) {
            let _ = req.insert_header(spec.header.clone(), v);
        }
    }
    if let Some(v) = input.host {
        if let Ok(v) = http::HeaderValue::from_bytes(v) {
            let _ = req.insert_header(http::header::HOST, v);
        }
    }
    if let Some(claim) = spec.extract(&req) {
        let got = match claim {
            Claim::Value(v) => v,
            Claim::Ambiguous => {
                // only a repeated tenant header is ambiguous
                assert!(req.headers.get_all(&spec.header).iter().count() > 1);
                let r = reg.resolve(spec, &req, input.now);
                assert_eq!(r, statuswatch::tenant::SlotRef::INVALID);
                return;
            }
        };
        let from_header = req
            .headers
            .get(&spec.header)
            .is_some_and(|h| within(got, h.as_bytes()));
        let from_host = req
            .headers
            .get(http::header::HOST)
            .is_some_and(|h| within(got, h.as_bytes()))
            || req.uri.host().is_some_and(|h| within(got, h.as_bytes()));
        let from_path = within(got, req.uri.path().as_bytes());
        assert!(
            from_header || from_host || from_path,
            "extracted {got:?} from nowhere in {req:?}"
        );
        let r = reg.resolve(spec, &req, input.now);
        assert!(reg.is_current(r));
    }

    if input.sweep {
        reg.sweep(spec, input.now);
        assert!(reg.tracked() <= CAP);
    }
});
