//! The live routing table: a parallel Scan of a DynamoDB table.
//!
//! Every segment pages through its part of the table on its own task;
//! a page that fails for a transient reason is retried ([`crate::aws`]).
//! A segment that still fails fails the whole scan, and the others are
//! cancelled: a snapshot of part of a table is never made.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{AttributeValue, KeyType, ScalarAttributeType, TableDescription};
use aws_sdk_dynamodb::Client;

use crate::aws::{describe, retried, with_retries, RetryPolicy};
use edgeroute_compiler::item::{dynamodb_type_name, Location, RawItem, Value};
use edgeroute_compiler::source::SourceItem;

/// How to scan.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScanOptions {
    /// Parallel segments; `None` picks one per 256 MiB of table, at least 4
    /// (DynamoDB reports the size; it lags by up to six hours).
    pub segments: Option<u32>,
    /// Strongly consistent reads (twice the read capacity).
    pub consistent: bool,
    /// Items per page (Scan's `Limit`); `None` lets DynamoDB fill 1 MB pages.
    /// Small pages spread a throttled table's capacity more evenly.
    pub page_size: Option<u32>,
    pub retry: RetryPolicy,
}

/// Most segments a scan uses when it picks for itself.
const MAX_DEFAULT_SEGMENTS: u64 = 64;

/// Hears how a scan is going. Called from the task that awaits the scan
/// (which may move between threads).
pub trait ScanProgress: Sync {
    /// The scan starts: `segments` segments; DynamoDB's item count estimate.
    fn started(&self, _segments: u32, _estimated_items: u64) {}
    /// `items` items in `pages` pages so far, after `retries` retries.
    fn scanned(&self, _items: u64, _pages: u64, _retries: u64) {}
    /// A page request failed for a transient reason and will be retried.
    fn retrying(&self, _segment: u32, _why: &str) {}
}

impl ScanProgress for () {}

/// A finished scan.
#[derive(Debug)]
pub struct TableScan {
    /// Every item, segment by segment, in the order DynamoDB returned them.
    pub items: Vec<SourceItem<'static>>,
    pub segments: u32,
    pub pages: u64,
    pub retries: u64,
    pub elapsed: Duration,
}

/// Why a table could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("table {table:?} does not exist (in this account, region and endpoint)")]
    NoSuchTable { table: String },
    #[error("cannot describe table {table:?}: {why}")]
    Describe { table: String, why: String },
    #[error("table {table:?} is keyed by {key}; an edgeroute routing table is keyed by Domain alone (a string)")]
    Key { table: String, key: String },
    #[error(
        "scan segment {segment} of {segments} failed after {attempts} attempt(s): {why}; nothing was compiled from a part of the table"
    )]
    Segment { segment: u32, segments: u32, attempts: u32, why: String },
}

struct Counters {
    items: AtomicU64,
    pages: AtomicU64,
    retries: AtomicU64,
    notes: Mutex<Vec<(u32, String)>>,
}

/// Scans all of `table`.
pub async fn scan_table(
    config: &SdkConfig,
    table: &str,
    options: &ScanOptions,
    progress: &dyn ScanProgress,
) -> Result<TableScan, ScanError> {
    let start = Instant::now();
    let client = Client::new(config);
    let described =
        retried(&options.retry, || client.describe_table().table_name(table).send()).await.map_err(|failed| {
            if failed.error.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) {
                ScanError::NoSuchTable { table: table.to_owned() }
            } else {
                ScanError::Describe { table: table.to_owned(), why: describe(&failed.error) }
            }
        })?;
    let description = described.table.unwrap_or_else(|| TableDescription::builder().build());
    check_key(table, &description)?;
    let segments = options.segments.unwrap_or_else(|| {
        let size = description.table_size_bytes.unwrap_or(0).max(0) as u64;
        size.div_ceil(256 << 20).clamp(4, MAX_DEFAULT_SEGMENTS) as u32
    });
    progress.started(segments, description.item_count.unwrap_or(0).max(0) as u64);

    let counters =
        Arc::new(Counters { items: 0.into(), pages: 0.into(), retries: 0.into(), notes: Mutex::new(Vec::new()) });
    let mut tasks = tokio::task::JoinSet::new();
    for segment in 0..segments {
        let (client, table, options, counters) = (client.clone(), table.to_owned(), *options, counters.clone());
        tasks.spawn(
            async move { (segment, scan_segment(&client, &table, segment, segments, &options, &counters).await) },
        );
    }
    let mut parts: Vec<Vec<SourceItem<'static>>> = (0..segments).map(|_| Vec::new()).collect();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let report = |counters: &Counters| {
        let notes = std::mem::take(&mut *counters.notes.lock().unwrap_or_else(|p| p.into_inner()));
        for (segment, why) in notes {
            progress.retrying(segment, &why);
        }
        progress.scanned(
            counters.items.load(Ordering::Relaxed),
            counters.pages.load(Ordering::Relaxed),
            counters.retries.load(Ordering::Relaxed),
        );
    };
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                None => break,
                Some(Ok((segment, Ok(items)))) => parts[segment as usize] = items,
                Some(Ok((_, Err(e)))) => {
                    tasks.abort_all();
                    report(&counters);
                    return Err(e);
                }
                Some(Err(join)) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
                Some(Err(_)) => unreachable!("segment tasks are only aborted after this loop"),
            },
            _ = tick.tick() => report(&counters),
        }
    }
    report(&counters);
    Ok(TableScan {
        items: parts.into_iter().flatten().collect(),
        segments,
        pages: counters.pages.load(Ordering::Relaxed),
        retries: counters.retries.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
    })
}

fn check_key(table: &str, description: &TableDescription) -> Result<(), ScanError> {
    let keys = description.key_schema();
    let type_of = |name: &str| {
        description
            .attribute_definitions()
            .iter()
            .find(|d| d.attribute_name() == name)
            .map(|d| d.attribute_type().clone())
    };
    let ok = matches!(keys, [k] if k.attribute_name() == "Domain" && *k.key_type() == KeyType::Hash)
        && type_of("Domain") == Some(ScalarAttributeType::S);
    if ok || keys.is_empty() {
        // Some servers leave the schema out; the items still carry Domain.
        return Ok(());
    }
    let key = keys
        .iter()
        .map(|k| {
            let t = type_of(k.attribute_name()).map_or_else(|| "?".to_owned(), |t| t.as_str().to_owned());
            format!("{} ({} {t})", k.attribute_name(), k.key_type().as_str())
        })
        .collect::<Vec<_>>()
        .join(" + ");
    Err(ScanError::Key { table: table.to_owned(), key })
}

async fn scan_segment(
    client: &Client,
    table: &str,
    segment: u32,
    segments: u32,
    options: &ScanOptions,
    counters: &Counters,
) -> Result<Vec<SourceItem<'static>>, ScanError> {
    let mut items = Vec::new();
    let mut start_key: Option<HashMap<String, AttributeValue>> = None;
    loop {
        let page = with_retries(
            &options.retry,
            |why| {
                counters.retries.fetch_add(1, Ordering::Relaxed);
                counters.notes.lock().unwrap_or_else(|p| p.into_inner()).push((segment, why.to_owned()));
            },
            || {
                client
                    .scan()
                    .table_name(table)
                    .segment(segment as i32)
                    .total_segments(segments as i32)
                    .consistent_read(options.consistent)
                    .set_limit(options.page_size.map(|n| n.min(i32::MAX as u32) as i32))
                    .set_exclusive_start_key(start_key.clone())
                    .send()
            },
        )
        .await
        .map_err(|failed| ScanError::Segment {
            segment,
            segments,
            attempts: failed.attempts,
            why: describe(&failed.error),
        })?;
        let page_items = page.items.unwrap_or_default();
        counters.items.fetch_add(page_items.len() as u64, Ordering::Relaxed);
        counters.pages.fetch_add(1, Ordering::Relaxed);
        for attributes in page_items {
            let location = Location::Scan { segment, index: items.len() as u32 };
            items.push((location, Ok(raw_item(attributes))));
        }
        match page.last_evaluated_key {
            Some(key) if !key.is_empty() => start_key = Some(key),
            _ => return Ok(items),
        }
    }
}

/// The attributes edgeroute reads, typed loosely like any source's.
pub fn raw_item(mut attributes: HashMap<String, AttributeValue>) -> RawItem<'static> {
    let mut take = |name: &str| attributes.remove(name).map(value);
    let mut item = RawItem {
        domain: take("Domain"),
        target: take("Target"),
        origin: take("Origin"),
        assets: take("Assets"),
        fallback: take("Fallback"),
        // A table's items are never deletions (only `apply`'s lines are).
        deleted: None,
        not_an_object: None,
        duplicate_attribute: None,
        miscased: Vec::new(),
    };
    item.note_unread_names(attributes.keys());
    item
}

fn value(v: AttributeValue) -> Value<'static> {
    let tag = match v {
        AttributeValue::S(s) => return Value::Str(Cow::Owned(s)),
        AttributeValue::L(list) => return Value::List(list.into_iter().map(value).collect()),
        AttributeValue::Ss(set) => return Value::List(set.into_iter().map(|s| Value::Str(Cow::Owned(s))).collect()),
        AttributeValue::N(_) => "N",
        AttributeValue::B(_) => "B",
        AttributeValue::Bool(_) => "BOOL",
        AttributeValue::Null(_) => "NULL",
        AttributeValue::M(_) => "M",
        AttributeValue::Ns(_) => "NS",
        AttributeValue::Bs(_) => "BS",
        _ => "a type this SDK does not know",
    };
    Value::Other(dynamodb_type_name(tag).unwrap_or(tag))
}
