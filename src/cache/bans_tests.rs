//! Ban list matching and pruning.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;

fn t(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// A subject from its text: the authority up to the first `/`.
fn s(text: &str) -> BanSubject<'_> {
    let i = text.find('/').unwrap_or(text.len());
    BanSubject::new(&text[..i], &text[i..])
}

fn ban(kind: BanKind, p: &str, at_ms: u64, soft: bool) -> Ban {
    Ban {
        kind,
        pattern: p.into(),
        at_ms,
        soft,
    }
}

#[test]
fn subject_is_normalised_like_the_cache_key() {
    assert_eq!(
        ban_subject("http", "Example.COM:80", "/a?b"),
        "example.com/a?b"
    );
    assert_eq!(ban_subject("http", "h:8080", ""), "h:8080/");
    assert_eq!(ban_subject("https", "h:443", "/x"), "h/x");
}

#[test]
fn hard_bans_match_objects_created_at_or_before() {
    let b = BanList::new();
    assert_eq!(b.check(&s("h/a"), &[], t(1), t(1)), BanVerdict::None);
    b.add(&ban(BanKind::Url, "h/a", 100, false));
    assert_eq!(b.check(&s("h/a"), &[], t(100), t(100)), BanVerdict::Hard);
    assert_eq!(b.check(&s("h/a"), &[], t(101), t(101)), BanVerdict::None);
    assert_eq!(b.check(&s("h/ab"), &[], t(50), t(50)), BanVerdict::None);
    b.add(&ban(BanKind::Prefix, "h/img/", 100, false));
    assert_eq!(
        b.check(&s("h/img/x.png"), &[], t(99), t(99)),
        BanVerdict::Hard
    );
    assert_eq!(b.check(&s("h/im"), &[], t(99), t(99)), BanVerdict::None);
    b.add(&ban(BanKind::Tag, "red", 100, false));
    let tags = vec!["blue".to_string(), "red".to_string()];
    assert_eq!(b.check(&s("x/y"), &tags, t(99), t(99)), BanVerdict::Hard);
    assert_eq!(
        b.check(&s("x/y"), &tags[..1], t(99), t(99)),
        BanVerdict::None
    );
}

#[test]
fn soft_bans_match_until_revalidated_and_hard_wins() {
    let b = BanList::new();
    b.add(&ban(BanKind::Tag, "t", 100, true));
    let tags = vec!["t".to_string()];
    assert_eq!(b.check(&s("h/a"), &tags, t(10), t(90)), BanVerdict::Soft);
    // Revalidated after the ban (304 resets response_time): no longer stale.
    assert_eq!(b.check(&s("h/a"), &tags, t(10), t(150)), BanVerdict::None);
    b.add(&ban(BanKind::Url, "h/a", 100, false));
    assert_eq!(b.check(&s("h/a"), &tags, t(10), t(90)), BanVerdict::Hard);
}

#[test]
fn newer_bans_supersede_older_ones() {
    let b = BanList::new();
    b.add(&ban(BanKind::Url, "h/a", 10, false));
    b.add(&ban(BanKind::Url, "h/a", 20, false));
    b.add(&ban(BanKind::Url, "h/a", 15, true));
    assert_eq!(b.len(), 1, "{:?}", b.bans());
    b.add(&ban(BanKind::Url, "h/img/1", 30, false));
    b.add(&ban(BanKind::Prefix, "h/img/2/", 30, true));
    b.add(&ban(BanKind::Prefix, "h/img/", 40, false));
    b.add(&ban(BanKind::Url, "h/img/3", 50, false));
    let floor = b.prune(t(60), Duration::from_secs(3600));
    assert_eq!(floor, None);
    let kept: Vec<(String, u64)> = b.bans().into_iter().map(|b| (b.pattern, b.at_ms)).collect();
    assert_eq!(
        kept,
        vec![
            ("h/a".to_string(), 20),
            ("h/img/".to_string(), 40),
            ("h/img/3".to_string(), 50)
        ]
    );
}

#[test]
fn old_bans_are_dropped_behind_a_floor() {
    let b = BanList::new();
    b.add(&ban(BanKind::Tag, "old", 1_000, false));
    b.add(&ban(BanKind::Tag, "new", 90_000, false));
    let floor = b.prune(t(100_000), Duration::from_secs(60));
    assert_eq!(floor, Some(1_000));
    assert_eq!(b.len(), 1);
    // Anything created by the dropped ban's time is still banned.
    assert_eq!(
        b.check(&s("h/x"), &[], t(1_000), t(1_000)),
        BanVerdict::Hard
    );
    assert_eq!(
        b.check(&s("h/x"), &[], t(1_001), t(1_001)),
        BanVerdict::None
    );
    assert_eq!(b.prune(t(100_000), Duration::from_secs(60)), None);
}

#[test]
fn the_floor_alone_still_bans_and_a_later_ban_is_seen() {
    let b = BanList::new();
    assert_eq!(b.check(&s("h/x"), &[], t(0), t(0)), BanVerdict::None);
    b.add(&ban(BanKind::Url, "h/x", 1_000, false));
    // Every ban dropped: the maps are empty, the floor is what is left.
    assert_eq!(b.prune(t(100_000), Duration::from_secs(60)), Some(1_000));
    assert_eq!(b.len(), 0);
    assert_eq!(
        b.check(&s("h/y"), &[], t(1_000), t(1_000)),
        BanVerdict::Hard
    );
    assert_eq!(
        b.check(&s("h/y"), &[], t(1_001), t(1_001)),
        BanVerdict::None
    );
    b.raise_floor(2_000);
    assert_eq!(
        b.check(&s("h/y"), &[], t(2_000), t(2_000)),
        BanVerdict::Hard
    );
    // A ban added after the maps were emptied applies at once.
    b.add(&ban(BanKind::Prefix, "h/y", 5_000, true));
    assert_eq!(
        b.check(&s("h/y/z"), &[], t(3_000), t(3_000)),
        BanVerdict::Soft
    );
    assert_eq!(
        b.check(&s("h/q"), &[], t(3_000), t(3_000)),
        BanVerdict::None
    );
    assert_eq!(
        b.check(&s("h/q"), &[], t(1_500), t(1_500)),
        BanVerdict::Hard
    );
}
