//! A DynamoDB table export read straight from S3: the folder
//! `s3://BUCKET/…/AWSDynamoDB/<export id>` gets exactly the checks of a
//! local copy (`edgeroute_compiler::export`); the data files are downloaded
//! 16 at a time.

use std::path::PathBuf;

use edgeroute_compiler::export::{Export, ExportError, Manifest};

/// Data files downloaded at once.
const DOWNLOADS: usize = 16;

/// Why an export in S3 cannot be read. Nothing is compiled from it.
#[derive(Debug, thiserror::Error)]
pub enum ExportS3Error {
    #[error("cannot read {url}: {why}")]
    S3 { url: String, why: String },
    #[error(transparent)]
    Export(#[from] ExportError),
}

async fn get(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<Vec<u8>, ExportS3Error> {
    let url = || format!("s3://{bucket}/{key}");
    let out = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| ExportS3Error::S3 { url: url(), why: crate::aws::describe(&e) })?;
    let bytes = out.body.collect().await.map_err(|e| ExportS3Error::S3 { url: url(), why: e.to_string() })?;
    Ok(bytes.to_vec())
}

/// Reads the export whose folder is `s3://BUCKET/FOLDER`.
pub async fn open(client: &aws_sdk_s3::Client, bucket: &str, folder: &str) -> Result<Export, ExportS3Error> {
    let folder = folder.trim_matches('/');
    let key = |name: &str| if folder.is_empty() { name.to_owned() } else { format!("{folder}/{name}") };
    let url = |name: &str| PathBuf::from(format!("s3://{bucket}/{}", key(name)));
    let summary = get(client, bucket, &key("manifest-summary.json")).await?;
    let files = get(client, bucket, &key("manifest-files.json")).await?;
    let manifest = Manifest::parse(&summary, &url("manifest-summary.json"), &files, &url("manifest-files.json"))?;
    let data = key("data/");
    let mut names = Vec::new();
    let mut pages = client.list_objects_v2().bucket(bucket).prefix(&data).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page
            .map_err(|e| ExportS3Error::S3 { url: format!("s3://{bucket}/{data}"), why: crate::aws::describe(&e) })?;
        names.extend(page.contents().iter().filter_map(|o| o.key()?.strip_prefix(&data).map(str::to_owned)));
    }
    manifest.check_listing(&names, &url("data"))?;
    let wanted: Vec<String> = manifest.data_files().map(|name| key(&format!("data/{name}"))).collect();
    let mut downloads = tokio::task::JoinSet::new();
    let mut raw: Vec<Option<(PathBuf, Vec<u8>)>> = wanted.iter().map(|_| None).collect();
    let mut next = 0;
    while next < wanted.len() || !downloads.is_empty() {
        while next < wanted.len() && downloads.len() < DOWNLOADS {
            let (client, bucket, name) = (client.clone(), bucket.to_owned(), wanted[next].clone());
            let i = next;
            downloads.spawn(async move {
                let got = get(&client, &bucket, &name).await;
                (i, got.map(|bytes| (PathBuf::from(format!("s3://{bucket}/{name}")), bytes)))
            });
            next += 1;
        }
        if let Some(done) = downloads.join_next().await {
            let (i, result) = done.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            raw[i] = Some(result?);
        }
    }
    let raw = raw.into_iter().map(|r| r.expect("every file downloaded")).collect();
    Ok(Export::from_data_files(manifest, raw)?)
}
