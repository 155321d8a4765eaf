//! A fresh Postgres database per test, dropped afterwards — also when the test panics.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, Ordering};

use futures::FutureExt;

/// The administrative URL from `DATABASE_URL`. Panics with how to set it: Postgres tests
/// never skip.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "DATABASE_URL is not set. Postgres tests need a running server and a role allowed \
             to CREATE DATABASE, e.g.\n    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
             (scripts/test.sh sets it and starts Postgres)"
        )
    })
}

/// Creates a uniquely named database (`<prefix>_<pid>_<n>_<µs>`), runs `test` with its URL,
/// then drops it with `WITH (FORCE)`, re-raising the test's panic if it had one.
pub async fn with_database<F, Fut, T>(prefix: &str, test: F) -> T
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = T>,
{
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let admin_url = admin_url();
    let admin = sqlx::PgPool::connect(&admin_url).await.unwrap_or_else(|e| {
        panic!("cannot connect to DATABASE_URL (is Postgres running on 127.0.0.1:5432?): {e}")
    });
    let name = format!(
        "{}_{}_{}_{}",
        prefix.replace('-', "_"),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        chrono::Utc::now().timestamp_micros()
    );
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    let mut url = url::Url::parse(&admin_url).expect("DATABASE_URL is a URL");
    url.set_path(&name);
    let outcome = AssertUnwindSafe(test(url.to_string())).catch_unwind().await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap_or_else(|e| panic!("DROP DATABASE {name}: {e}"));
    admin.close().await;
    match outcome {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
