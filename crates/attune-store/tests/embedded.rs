//! The conformance suite against the embedded (fjall) backend.

use std::sync::Arc;

use attune_store::{EmbeddedStore, Store, conformance::Harness};

struct Embedded {
    dir: tempfile::TempDir,
    store: Option<Arc<dyn Store>>,
}

impl Harness for Embedded {
    fn store(&mut self) -> Arc<dyn Store> {
        if self.store.is_none() {
            self.store = Some(Arc::new(EmbeddedStore::open(self.dir.path()).expect("open")));
        }
        Arc::clone(self.store.as_ref().expect("opened"))
    }

    fn reopen(&mut self) -> Arc<dyn Store> {
        self.store = None;
        self.store()
    }
}

attune_store::conformance_tests!(Embedded { dir: tempfile::tempdir().expect("tempdir"), store: None });
