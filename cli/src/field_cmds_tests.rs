//! Every figure of a profile is overridable by its flag (`apoyo proxy` and `apoyo fieldtest`
//! share them): each flag given a distinct value lands in its own field, and nothing else.

use clap::Parser;

use super::LinkArgs;
use apoyo_fieldkit::profile::{self, Profile};

#[derive(Parser)]
struct Cmd {
    #[command(flatten)]
    link: LinkArgs,
}

fn parse(args: &[&str]) -> Profile {
    let mut all = vec!["apoyo"];
    all.extend_from_slice(args);
    Cmd::try_parse_from(all)
        .expect("flags parse")
        .link
        .profile()
        .expect("a valid profile")
}

#[test]
fn every_figure_is_overridden_by_its_flag() {
    let p = parse(&[
        "--profile",
        "edge",
        "--up-kbps",
        "11",
        "--down-kbps",
        "12",
        "--delay-ms",
        "13",
        "--jitter-ms",
        "14",
        "--loss-pct",
        "15",
        "--refuse-pct",
        "16",
        "--cut-pct",
        "17",
        "--cut-max-bytes",
        "18",
        "--reset-up-after",
        "19",
        "--reset-down-after",
        "20",
        "--stall-pct",
        "21",
        "--stall-after",
        "22",
        "--status-pct",
        "23",
        "--retry-after",
        "24",
        "--flap-up-secs",
        "25",
        "--flap-down-secs",
        "26",
        "--server-delay-ms",
        "27",
    ]);
    let edge = profile::by_name("edge").expect("edge");
    let expected = Profile {
        up_kbps: Some(11.0),
        down_kbps: Some(12.0),
        delay_ms: 13,
        jitter_ms: 14,
        loss_pct: 15.0,
        refuse_pct: 16.0,
        cut_pct: 17.0,
        cut_max_bytes: 18,
        reset_up_after: Some(19),
        reset_down_after: Some(20),
        stall_pct: 21.0,
        stall_after: Some(22),
        status_pct: 23.0,
        retry_after_secs: 24,
        flap_up_secs: 25.0,
        flap_down_secs: 26.0,
        server_delay_ms: (27, 27),
        ..edge.clone()
    };
    assert_eq!(p, expected);
    // No flag: the named profile as published; a rate of 0 means unlimited.
    assert_eq!(parse(&["--profile", "edge"]), edge);
    let free = parse(&["--profile", "edge", "--up-kbps", "0"]);
    assert_eq!((free.up_kbps, free.down_kbps), (None, edge.down_kbps));
}
