//! Asking the ELBv2 API (`DescribeLoadBalancers`) for the DNS names of ELB
//! ARN Targets that have no `Origin`: once per ARN per compile, 20 ARNs per
//! request, in the ARN's own region. An ARN that names no load balancer is
//! that item's error; an API that cannot be reached at all fails the
//! compile, since that says nothing about the items.

use std::collections::{BTreeMap, BTreeSet};

use aws_config::{Region, SdkConfig};
use aws_sdk_elasticloadbalancingv2::error::ProvideErrorMetadata;
use aws_sdk_elasticloadbalancingv2::Client;
use edgeroute_compiler::elb::{apply_origins, arns_without_origin, region_of, Origins};
use edgeroute_compiler::source::SourceItem;

use crate::aws::{describe, retried, RetryPolicy};

/// `DescribeLoadBalancers` takes at most this many ARNs.
const BATCH: usize = 20;

/// The ELBv2 API failed for a reason that is not about one ARN.
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve {arns} ELB ARN(s) without Origin: DescribeLoadBalancers in {region} failed after {attempts} attempt(s): {why}")]
pub struct ElbError {
    pub arns: usize,
    pub region: String,
    pub attempts: u32,
    pub why: String,
}
/// Asks the ELBv2 API for the DNS name of every ARN.
pub async fn describe_load_balancers(
    config: &SdkConfig,
    arns: &BTreeSet<String>,
    retry: &RetryPolicy,
) -> Result<Origins, ElbError> {
    let mut by_region: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for arn in arns {
        if let Some(region) = region_of(arn) {
            by_region.entry(region).or_default().push(arn);
        }
    }
    let mut origins = Origins::new();
    for (region, arns) in by_region {
        let conf = aws_sdk_elasticloadbalancingv2::config::Builder::from(config).region(Region::new(region.to_owned()));
        let client = Client::from_conf(conf.build());
        // A batch naming one unknown ARN fails as a whole: split it until
        // the unknown ones stand alone.
        let mut work: Vec<&[&str]> = arns.chunks(BATCH).collect();
        while let Some(batch) = work.pop() {
            let answer = retried(retry, || {
                client
                    .describe_load_balancers()
                    .set_load_balancer_arns(Some(batch.iter().map(|a| a.to_string()).collect()))
                    .send()
            })
            .await;
            match answer {
                Ok(out) => {
                    for lb in out.load_balancers() {
                        if let Some(arn) = lb.load_balancer_arn() {
                            let origin = match lb.dns_name() {
                                Some(dns) if !dns.is_empty() => Ok(dns.to_ascii_lowercase()),
                                _ => Err("the load balancer has no DNS name (a Gateway Load Balancer?)".to_owned()),
                            };
                            origins.insert(arn.to_owned(), origin);
                        }
                    }
                    for arn in batch {
                        origins
                            .entry(arn.to_string())
                            .or_insert_with(|| Err("no such load balancer in this account and region".to_owned()));
                    }
                }
                Err(failed) if is_about_the_arns(&failed.error) => {
                    if let [arn] = batch {
                        origins.insert(arn.to_string(), Err(describe(&failed.error)));
                    } else {
                        let (a, b) = batch.split_at(batch.len() / 2);
                        work.extend([a, b]);
                    }
                }
                Err(failed) => {
                    return Err(ElbError {
                        arns: arns.len(),
                        region: region.to_owned(),
                        attempts: failed.attempts,
                        why: describe(&failed.error),
                    })
                }
            }
        }
    }
    Ok(origins)
}

/// Errors that say an ARN is unknown or malformed, rather than that the
/// API failed.
fn is_about_the_arns<E: ProvideErrorMetadata>(err: &aws_sdk_elasticloadbalancingv2::error::SdkError<E>) -> bool {
    matches!(err.code(), Some("LoadBalancerNotFound" | "LoadBalancerNotFoundException" | "ValidationError"))
}
/// [`arns_without_origin`], [`describe_load_balancers`] and
/// [`apply_origins`] in one step; does not touch the network when every
/// ARN Target has its `Origin`. Returns how many items were filled in.
pub async fn resolve_origins(
    config: &SdkConfig,
    items: &mut [SourceItem<'_>],
    retry: &RetryPolicy,
) -> Result<usize, ElbError> {
    let arns = arns_without_origin(items);
    if arns.is_empty() {
        return Ok(0);
    }
    let origins = describe_load_balancers(config, &arns, retry).await?;
    Ok(apply_origins(items, &origins))
}
