//! The engine's `tracing` events, as a subscriber sees them: one event per step, the same fields
//! everywhere, tokens and sessions in hex, nothing said twice.

mod common;

use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use common::{connect, shared_connect, unique_path};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;
use zk_lock::{Error, Mutex};

#[derive(Debug, Clone, Default)]
struct Seen {
    target: String,
    level: String,
    message: String,
    fields: Vec<(String, String)>,
    spans: Vec<String>,
}

impl Seen {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

struct Fields<'a>(&'a mut Seen);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let value = format!("{value:?}");
        if field.name() == "message" {
            self.0.message = value;
        } else {
            self.0.fields.push((field.name().to_owned(), value.trim_matches('"').to_owned()));
        }
    }
}

#[derive(Clone, Default)]
struct Capture(Arc<StdMutex<Vec<Seen>>>);

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        if !meta.target().starts_with("zk_lock") {
            return;
        }
        let mut seen = Seen { target: meta.target().to_owned(), level: meta.level().to_string(), ..Seen::default() };
        event.record(&mut Fields(&mut seen));
        if let Some(scope) = ctx.event_scope(event) {
            seen.spans = scope.from_root().map(|s| s.name().to_owned()).collect();
        }
        self.0.lock().unwrap().push(seen);
    }
}

impl Capture {
    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn named<'a>(events: &'a [Seen], message: &str) -> Vec<&'a Seen> {
    events.iter().filter(|e| e.message == message).collect()
}

// One thread: every task, the background deletes included, reports to this test's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn every_step_of_a_lock_is_one_event_with_the_same_fields() {
    let capture = Capture::default();
    let _default = tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let cs = shared_connect();
    let (a, b) = (connect(&cs, Duration::from_secs(4)).await, connect(&cs, Duration::from_secs(4)).await);
    let path = unique_path("events");
    let (ma, mb) = (Mutex::new(&a, path.clone()).unwrap(), Mutex::new(&b, path.clone()).unwrap());
    let hex_session = |c: &zk_lock::zk::Client| format!("{:#x}", c.session_id().0);

    // Granted: one event, with the wait, the session, the token in hex; enqueued before it.
    let guard = ma.lock().await.unwrap();
    let events = capture.take();
    let granted = named(&events, "granted");
    assert_eq!(granted.len(), 1, "{events:#?}");
    let g = granted[0];
    assert_eq!((g.target.as_str(), g.level.as_str()), ("zk_lock", "DEBUG"));
    assert_eq!(g.field("lock"), Some(path.as_str()));
    assert_eq!(g.field("node"), Some(guard.node()));
    assert_eq!(g.field("session"), Some(hex_session(&a).as_str()));
    assert_eq!(g.field("token"), Some(guard.fencing_token().to_string().as_str()));
    assert!(g.field("waited_ms").is_some() && g.field("by") == Some("listing"), "{g:?}");
    assert!(g.spans.iter().any(|s| s == "acquire"), "{g:?}");
    assert_eq!(named(&events, "enqueued").len(), 1);
    assert!(events.iter().all(|e| !e.message.contains("held")), "said twice: {events:#?}");

    // A busy try_lock, a timed-out and a cancelled acquire each say so.
    assert!(matches!(mb.try_lock().await.map(drop), Err(Error::WouldBlock { .. })));
    assert!(matches!(mb.lock_timeout(Duration::from_millis(50)).await.map(drop), Err(Error::Timeout { .. })));
    assert!(tokio::time::timeout(Duration::from_millis(50), mb.lock()).await.is_err());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let events = capture.take();
    let busy = named(&events, "busy: try_lock wrote nothing");
    assert_eq!(busy.len(), 1, "{events:#?}");
    assert_eq!(busy[0].field("session"), Some(hex_session(&b).as_str()));
    let abandoned: Vec<_> = named(&events, "acquire abandoned").into_iter().filter_map(|e| e.field("why")).collect();
    assert_eq!(abandoned, ["timed out", "cancelled"], "{events:#?}");
    for e in named(&events, "acquire abandoned") {
        assert!(e.field("waited_ms").is_some() && e.field("node").is_some_and(|n| n.starts_with(&path)), "{e:?}");
    }
    // The cancelled attempt's node was deleted in the background, and that was said too.
    assert!(
        named(&events, "background delete done").iter().any(|e| e.field("outcome") == Some("deleted")),
        "{events:#?}"
    );

    // Released: inside its span, with how long it was held.
    guard.release().await.unwrap();
    let events = capture.take();
    let released = named(&events, "released");
    assert_eq!(released.len(), 1, "{events:#?}");
    assert!(released[0].spans.iter().any(|s| s == "zk_lock::release"), "{:?}", released[0]);
    assert!(released[0].field("held_ms").is_some());

    // A dropped guard, and the outcome of its background delete.
    let guard = ma.lock().await.unwrap();
    let node = guard.node().to_owned();
    drop(guard);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let events = capture.take();
    let dropped = named(&events, "guard dropped: deleting in the background");
    assert_eq!(dropped.len(), 1, "{events:#?}");
    assert_eq!(dropped[0].field("node"), Some(node.as_str()));
    let done = named(&events, "background delete done");
    assert!(done.iter().any(|e| e.field("node") == Some(node.as_str()) && e.field("outcome") == Some("deleted")));

    // A guard that waited releases with a handoff: dropped, its delete is still reported as ours.
    let first = ma.lock().await.unwrap();
    let waiter = tokio::spawn({
        let mb = mb.clone();
        async move { mb.lock().await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    first.release().await.unwrap();
    let waited = waiter.await.unwrap();
    let node = waited.node().to_owned();
    drop(waited);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let events = capture.take();
    let done: Vec<_> = named(&events, "background delete done")
        .into_iter()
        .filter(|e| e.field("node") == Some(node.as_str()))
        .filter_map(|e| e.field("outcome"))
        .collect();
    assert_eq!(done, ["deleted"], "{events:#?}");

    // Every token anywhere is hex.
    for e in events.iter().filter(|e| e.field("token").is_some()) {
        assert!(e.field("token").unwrap().starts_with("0x"), "{e:?}");
    }
}
