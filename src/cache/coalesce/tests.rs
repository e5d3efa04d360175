//! Unit tests of the coalescer: roles, streaming to followers, release,
//! abandon/handover, window backpressure and late joiners.

use super::*;

fn co(window: usize) -> Arc<Coalescer<String>> {
    Arc::new(Coalescer::new(
        window,
        Duration::from_secs(5),
        Duration::from_secs(60),
    ))
}

#[tokio::test]
async fn one_leader_many_followers_stream_as_chunks_arrive() {
    let c = co(1 << 20);
    let key = [1u8; 32];
    let Join::Leader(w) = c.join(key) else {
        panic!("first is leader")
    };
    let mut followers = Vec::new();
    for _ in 0..10 {
        match c.join(key) {
            Join::Follower(r) => followers.push(r),
            _ => panic!("others follow"),
        }
    }
    let mine = w.publish(Arc::new("head".to_string())).unwrap();
    for f in &followers {
        assert_eq!(*c.wait_head(f).await.unwrap(), "head");
    }
    w.push(Bytes::from_static(b"a")).await;
    // A follower gets the first chunk before the writer is done.
    let mut f0 = followers.remove(0);
    assert_eq!(f0.next_chunk().await.unwrap().unwrap(), "a");
    w.push(Bytes::from_static(b"b")).await;
    w.finish();
    assert_eq!(f0.next_chunk().await.unwrap().unwrap(), "b");
    assert_eq!(f0.next_chunk().await.unwrap(), None);
    let mut mine = mine;
    assert_eq!(mine.next_chunk().await.unwrap().unwrap(), "a");
    assert_eq!(c.in_flight(), 0);
    // After finish, the next request leads a new fill.
    assert!(matches!(c.join(key), Join::Leader(_)));
}

#[tokio::test]
async fn release_sends_followers_to_the_origin_and_remembers_pass() {
    let c = co(1 << 20);
    let key = [2u8; 32];
    let Join::Leader(w) = c.join(key) else {
        panic!()
    };
    let Join::Follower(f) = c.join(key) else {
        panic!()
    };
    w.release();
    assert_eq!(c.wait_head(&f).await.unwrap_err(), WaitError::Released);
    assert!(matches!(c.join(key), Join::Pass));
    c.clear_pass(&key);
    assert!(matches!(c.join(key), Join::Leader(_)));
}

#[tokio::test]
async fn a_dropped_leader_hands_over_to_a_follower() {
    let c = co(1 << 20);
    let key = [3u8; 32];
    let Join::Leader(w) = c.join(key) else {
        panic!()
    };
    let Join::Follower(f) = c.join(key) else {
        panic!()
    };
    drop(w);
    assert_eq!(c.wait_head(&f).await.unwrap_err(), WaitError::Abandoned);
    assert!(
        matches!(c.join(key), Join::Leader(_)),
        "follower can lead now"
    );
}

#[tokio::test]
async fn a_writer_failing_mid_body_cuts_readers_off() {
    let c = co(1 << 20);
    let key = [4u8; 32];
    let Join::Leader(w) = c.join(key) else {
        panic!()
    };
    let mut r = w.publish(Arc::new(String::new())).unwrap();
    w.push(Bytes::from_static(b"x")).await;
    drop(w);
    assert_eq!(r.next_chunk().await.unwrap().unwrap(), "x");
    assert_eq!(r.next_chunk().await, Err(CutOff));
}

#[tokio::test]
async fn followers_time_out_waiting_for_a_head() {
    let c: Arc<Coalescer<String>> = Arc::new(Coalescer::new(
        1024,
        Duration::from_millis(50),
        Duration::from_secs(1),
    ));
    let key = [5u8; 32];
    let Join::Leader(_w) = c.join(key) else {
        panic!()
    };
    let Join::Follower(f) = c.join(key) else {
        panic!()
    };
    assert_eq!(c.wait_head(&f).await.unwrap_err(), WaitError::Timeout);
}

#[tokio::test]
async fn the_window_bounds_memory_and_a_slow_reader_throttles_the_writer() {
    let c = co(4);
    let key = [6u8; 32];
    let Join::Leader(w) = c.join(key) else {
        panic!()
    };
    let mut r = w.publish(Arc::new(String::new())).unwrap();
    let w = Arc::new(w);
    let w2 = w.clone();
    let pump = tokio::spawn(async move {
        for i in 0..100u8 {
            w2.push(Bytes::from(vec![i; 2])).await;
        }
    });
    let mut got = Vec::new();
    while got.len() < 100 {
        let chunk = r.next_chunk().await.unwrap().unwrap();
        let st = w.fill.lock();
        assert!(st.retained <= 4 + 2, "retained {} bytes", st.retained);
        drop(st);
        got.push(chunk[0]);
    }
    pump.await.unwrap();
    assert_eq!(got, (0..100u8).collect::<Vec<_>>());
    // A request arriving now cannot read from the start: it may only wait.
    assert!(matches!(c.join(key), Join::Wait(_)));
    match Arc::try_unwrap(w) {
        Ok(w) => w.finish(),
        Err(_) => panic!("writer still shared"),
    }
}

#[test]
fn key_hash_is_stable_per_key_and_spreads_keys() {
    use std::hash::BuildHasher;
    let h = KeyHash::default();
    let a: Key = [7; 32];
    let mut b = a;
    b[0] = 8;
    assert_eq!(h.hash_one(a), KeyHash::default().hash_one(a));
    assert_ne!(h.hash_one(a), h.hash_one(b));
    // Keys that share their first bytes still work as map keys.
    let mut c = a;
    c[31] = 0;
    let mut m: HashMap<Key, u8, KeyHash> = HashMap::default();
    m.insert(a, 1);
    m.insert(c, 2);
    assert_eq!((m.get(&a), m.get(&c)), (Some(&1), Some(&2)));
}

/// The leader of a new fill for `key` that published its head and pushed
/// one chunk, `a`, and the leader's own reader.
async fn leading_with_a_chunk(
    c: &Arc<Coalescer<String>>,
    key: Key,
) -> (FillWriter<String>, FillReader<String>) {
    let Join::Leader(w) = c.join(key) else {
        panic!("first is leader")
    };
    let r = w.publish(Arc::new("head".to_string())).unwrap();
    w.push(Bytes::from_static(b"a")).await;
    (w, r)
}

#[tokio::test]
async fn readers_end_at_the_body_s_end_and_waiters_at_the_commit() {
    let c = co(1 << 20);
    let key = [9u8; 32];
    let (w, mut r) = leading_with_a_chunk(&c, key).await;
    let waiter = c.join_existing(&key).unwrap().into_waiter();
    w.body_done();
    // The readers' copies are whole before the store has committed.
    assert_eq!(r.next_chunk().await.unwrap().unwrap(), "a");
    assert_eq!(r.next_chunk().await.unwrap(), None);
    // A request arriving now still joins the fill (it is not over)...
    let Join::Follower(mut late) = c.join(key) else {
        panic!("the fill is still in flight")
    };
    assert_eq!(late.next_chunk().await.unwrap().unwrap(), "a");
    assert_eq!(late.next_chunk().await.unwrap(), None);
    // ...and whoever waits for the object to be in the store still waits.
    let ended = tokio::time::timeout(Duration::from_millis(50), waiter.ended()).await;
    assert!(ended.is_err(), "a waiter returned before the commit");
    w.finish();
    tokio::time::timeout(Duration::from_secs(5), waiter.ended())
        .await
        .unwrap();
    assert_eq!(c.in_flight(), 0);
}

#[tokio::test]
async fn a_writer_dropped_after_the_body_s_end_leaves_it_whole() {
    let c = co(1 << 20);
    let key = [10u8; 32];
    let (w, mut r) = leading_with_a_chunk(&c, key).await;
    w.body_done();
    // The commit is cancelled (a shutdown): the body the readers got stays whole.
    drop(w);
    assert_eq!(r.next_chunk().await.unwrap().unwrap(), "a");
    assert_eq!(r.next_chunk().await.unwrap(), None);
    assert_eq!(c.in_flight(), 0);
}
