//! ELB ARN Targets without an `Origin`: which items need their load
//! balancer's DNS name, and filling it in once it is known.
//!
//! A resolved ARN becomes exactly what writing `Origin: DNSNAME` would
//! have made (https, port 443; `docs/table-schema.md`), so every source
//! compiles the same items to the same bytes. An ARN that names no load
//! balancer is that item's error. Asking the ELBv2 API is the control
//! plane's job (`edgeroute-control`); this module never touches a network.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use crate::entry::{ItemError, ItemErrorKind};
use crate::item::Value;
use crate::source::SourceItem;

/// Each ARN's DNS name, or why it has none.
pub type Origins = BTreeMap<String, Result<String, String>>;

/// The region field of an ELB ARN (`arn:PARTITION:elasticloadbalancing:REGION:…`).
pub fn region_of(arn: &str) -> Option<&str> {
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
