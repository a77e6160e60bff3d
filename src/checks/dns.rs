//! `dns`: resolve the target's records of the cycle's family (A or AAAA), cache off.

use futures_util::future::BoxFuture;

use crate::model::check_kind::Layer;
use crate::model::outcome::{CheckOutput, Observations};
use super::{Check, CheckContext};
use crate::model::target::Host;

/// The `dns` prober.
pub(super) struct Dns;

impl Check for Dns {

    fn layer(&self) -> Layer {
        Layer::Resolve
    }

    fn run<'a>(&'a self, cx: &'a mut CheckContext<'_>) -> BoxFuture<'a, CheckOutput> {
        Box::pin(async move {
            let Host::Name(name) = &cx.target.host else {
                // Config drops `dns` for IP literals; an ad-hoc literal lands here.
                return CheckOutput::pass(Observations::default());
            };
            match cx.env.resolver.lookup(name, cx.family).await {
                Ok(answer) => {
                    cx.debug(format!(
                        "{name}: {} answers: {:?}",
                        answer.addresses.len(),
                        answer.addresses
                    ));
                    let obs = Observations {
                        dns_answers: Some(answer.addresses.len() as u32),
                        addresses: answer.addresses.clone(),
                        ..Observations::default()
                    };
                    if let Err(f) = cx.env.check_addresses(&answer.addresses) {
                        return CheckOutput::fail(f).with(obs);
                    }
                    cx.set_addresses(answer.addresses);
                    CheckOutput::pass(obs)
                }
                Err(e) => CheckOutput::fail(e.to_failure()).with(Observations {
                    dns_answers: Some(0),
                    ..Observations::default()
                }),
            }
        })
    }
}
