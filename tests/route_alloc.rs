//! A request whose route a template matches allocates nothing on its way
//! through `Shared::record` (nor does one whose normalized route is already
//! known): a counting allocator, counting this thread only.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use statuswatch::config::{Config, RouteTemplate};
use statuswatch::record::{Asked, Finished};
use statuswatch::state::{Live, Shared};
use statuswatch::status::Origin;
use statuswatch::tenant::SlotRef;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn counted() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        counted();
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        counted();
        System.alloc_zeroed(l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        counted();
        System.realloc(p, l, n)
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

#[test]
fn a_matched_route_allocates_nothing() {
    let mut cfg = Config::defaults().unwrap();
    cfg.route_tally.routes = [
        ("GET", "/api/v2/customers"),
        ("GET", "/api/v2/customers/search"),
        ("", "/api/v2/customers/{id}"),
        ("POST", "/api/v2/customers/{id}/appointments/{appt}"),
        ("", "/api/v2/payments/{id}/refunds/{refund}/items/{item}"),
        ("", "/files/{*rest}"),
    ]
    .iter()
    .map(|(m, p)| RouteTemplate {
        method: m.to_string(),
        path: p.to_string(),
    })
    .collect();
    let shared = Shared::new(Live::build(cfg).unwrap());
    let live = shared.live.load_full();
    let headers = http::HeaderMap::new();
    let record = |method: &http::Method, path: &str| {
        let f = Finished {
            tenant: SlotRef::NONE,
            code: 200,
            origin: Origin::Upstream,
            elapsed: std::time::Duration::from_millis(1),
            error_kind: None,
            request: Some(Asked {
                method,
                path,
                headers: &headers,
            }),
        };
        shared.record(&live, &f, 0);
    };
    let matched = [
        (http::Method::GET, "/api/v2/customers"),
        (http::Method::GET, "/api/v2/customers/search"),
        (http::Method::DELETE, "/api/v2/customers/12345"),
        (http::Method::POST, "/api/v2/customers/7/appointments/99"),
        (http::Method::GET, "/api/v2/payments/1/refunds/2/items/3"),
        (http::Method::GET, "/files/a/b/c.txt"),
    ];
    let known_unmatched = (http::Method::GET, "/api/v2/webhooks/123");
    // warm up: the thread's first use of the state, the unmatched label's slot
    for (m, p) in matched.iter().chain([&known_unmatched]) {
        record(m, p);
    }
    for (m, p) in &matched {
        let n = allocations(|| {
            for _ in 0..1000 {
                record(m, p);
            }
        });
        assert_eq!(n, 0, "{m} {p}: {n} allocations in 1,000 requests");
    }
    let (m, p) = &known_unmatched;
    let n = allocations(|| {
        for _ in 0..1000 {
            record(m, p);
        }
    });
    assert_eq!(n, 0, "a known normalized route: {n} allocations");
    // the counter counts: a new label takes a slot, allocating its name
    let n = allocations(|| record(&http::Method::GET, "/a/new/route"));
    assert!(n > 0);
    let mut out = String::new();
    statuswatch::metrics::render(&shared, &mut out);
    assert!(out.contains(
        "statuswatch_route_responses_total{route=\"GET /api/v2/customers/search\",class=\"2xx\",origin=\"upstream\"} 1001\n"
    ));
}
