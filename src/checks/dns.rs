//! `dns`: resolve the target's records of the cycle's family (A or AAAA), cache off.

use futures_util::future::BoxFuture;

use crate::model::check_kind::Layer;
use crate::model::outcome::{CheckOutput, Measurement, Observations};
use super::{Check, CheckContext};
use crate::model::target::Host;

/// How many records of the family's type the lookup returned (0 on failure).
static ANSWERS: Measurement = Measurement {
    metric: "dualprobe_dns_answers",
    help: "Answers of the family's record type in the last lookup",
    blackbox: None,
    probe_help: "Answers of the family's record type",
    key: "dns_answers",
    describe: None,
};

static MEASURED: &[&Measurement] = &[&ANSWERS];

/// The `dns` check.
pub(super) struct Dns;

impl Check for Dns {

    fn layer(&self) -> Layer {
        Layer::Resolve
    }

    fn measurements(&self) -> &'static [&'static Measurement] {
        MEASURED
    }

    fn blackbox_duration(&self) -> Option<(&'static str, &'static str)> {
        Some(("probe_dns_lookup_time_seconds", "Duration of the DNS lookup"))
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
                        addresses: answer.addresses.clone(),
                        ..Observations::default()
                    }
                    .measure(&ANSWERS, answer.addresses.len() as i64);
                    if let Err(f) = cx.env.check_addresses(&answer.addresses) {
                        return CheckOutput::fail(f).with(obs);
                    }
                    cx.set_addresses(answer.addresses);
                    CheckOutput::pass(obs)
                }
                Err(e) => CheckOutput::fail(super::lookup_failure(name, cx.family, &e))
                    .with(Observations::default().measure(&ANSWERS, 0)),
            }
        })
    }
}
