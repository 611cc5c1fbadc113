//! ELB ARN Targets without an `Origin`: their DNS names come from the
//! ELBv2 API (`DescribeLoadBalancers`), asked once per ARN per compile, 20
//! ARNs per request, in the ARN's own region.
//!
//! A resolved ARN becomes exactly what writing `Origin: DNSNAME` would
//! have made (https, port 443; `docs/table-schema.md`), so every source
//! compiles the same items to the same bytes. An ARN that names no load
//! balancer is that item's error; an API that cannot be reached at all
//! fails the compile, since that says nothing about the items.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use aws_config::{Region, SdkConfig};
use aws_sdk_elasticloadbalancingv2::error::ProvideErrorMetadata;
use aws_sdk_elasticloadbalancingv2::Client;

use crate::aws::{describe, with_retries, RetryPolicy};
use crate::item::Value;
use crate::route::{ItemError, ItemErrorKind};
use crate::source::SourceItem;

/// `DescribeLoadBalancers` takes at most this many ARNs.
const BATCH: usize = 20;

/// Each ARN's DNS name, or why it has none.
pub type Origins = BTreeMap<String, Result<String, String>>;

/// The ELBv2 API failed for a reason that is not about one ARN.
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve {arns} ELB ARN(s) without Origin: DescribeLoadBalancers in {region} failed after {attempts} attempt(s): {why}")]
pub struct ElbError {
    pub arns: usize,
    pub region: String,
    pub attempts: u32,
    pub why: String,
}

/// The region field of an ELB ARN (`arn:PARTITION:elasticloadbalancing:REGION:…`).
fn region_of(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(5, ':');
    let ok = parts.next() == Some("arn") && parts.next().is_some() && parts.next() == Some("elasticloadbalancing");
    parts.next().filter(|r| ok && !r.is_empty())
}

/// The ARN Targets of items that have no `Origin` attribute. Items that
/// are wrong in other ways are left for validation to report.
pub fn arns_without_origin(items: &[SourceItem<'_>]) -> BTreeSet<String> {
    items
        .iter()
        .filter_map(|(_, item)| match item {
            Ok(item) if item.origin.is_none() => match &item.target {
                Some(Value::Str(t)) if region_of(t).is_some() => Some(t.to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
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
            let answer = with_retries(
                retry,
                |_| {},
                || {
                    client
                        .describe_load_balancers()
                        .set_load_balancer_arns(Some(batch.iter().map(|a| a.to_string()).collect()))
                        .send()
                },
            )
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

/// Fills in `Origin` for items whose ARN resolved, and turns items whose
/// ARN did not into item errors. Returns how many were filled in.
pub fn apply_origins(items: &mut [SourceItem<'_>], origins: &Origins) -> usize {
    let mut filled = 0;
    for (location, slot) in items.iter_mut() {
        let Ok(item) = slot else { continue };
        if item.origin.is_some() {
            continue;
        }
        let Some(Value::Str(arn)) = &item.target else { continue };
        match origins.get(arn.as_ref()) {
            None => {}
            Some(Ok(dns)) => {
                item.origin = Some(Value::Str(Cow::Owned(dns.clone())));
                filled += 1;
            }
            Some(Err(why)) => {
                let error = ItemError {
                    location: *location,
                    domain: match &item.domain {
                        Some(Value::Str(d)) => Some(d.to_string()),
                        _ => None,
                    },
                    kind: ItemErrorKind::ArnNotResolved { arn: arn.to_string(), why: why.clone() },
                };
                *slot = Err(error);
            }
        }
    }
    filled
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::{Location, RawItem};

    fn item(domain: &'static str, target: &'static str, origin: Option<&'static str>) -> SourceItem<'static> {
        let s = |v: &'static str| Value::Str(Cow::Borrowed(v));
        let raw =
            RawItem { domain: Some(s(domain)), target: Some(s(target)), origin: origin.map(s), ..RawItem::default() };
        (Location::Index(0), Ok(raw))
    }

    const ARN: &str = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/a/1";
    const OTHER: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/b/2";

    #[test]
    fn only_arns_without_origin_are_asked_for() {
        let items = vec![
            item("a.dev", ARN, None),
            item("b.dev", OTHER, Some("b.example")),
            item("c.dev", "s3://bucket", None),
            item("d.dev", "arn:aws:s3:::bucket", None),
            item("e.dev", ARN, None),
        ];
        assert_eq!(arns_without_origin(&items).into_iter().collect::<Vec<_>>(), vec![ARN.to_owned()]);
    }

    #[test]
    fn resolved_arns_get_their_origin_and_unresolved_ones_an_error() {
        let mut items = vec![item("a.dev", ARN, None), item("b.dev", OTHER, None)];
        let origins: Origins = [
            (ARN.to_owned(), Ok("a-1.eu-west-1.elb.amazonaws.com".to_owned())),
            (OTHER.to_owned(), Err("LoadBalancerNotFound".to_owned())),
        ]
        .into();
        assert_eq!(apply_origins(&mut items, &origins), 1);
        let Ok(a) = &items[0].1 else { panic!() };
        assert_eq!(a.origin, Some(Value::Str(Cow::Borrowed("a-1.eu-west-1.elb.amazonaws.com"))));
        let Err(e) = &items[1].1 else { panic!() };
        assert_eq!(e.domain.as_deref(), Some("b.dev"));
        assert!(matches!(&e.kind, ItemErrorKind::ArnNotResolved { arn, .. } if arn == OTHER));
    }
}
