//! AsyncResult: a value or an error set once, waited for with or without a timeout.

use std::rc::Rc;
use std::time::Duration;

use greenhub::hub;
use greenhub::sync::{AsyncResult, GetError};

#[test]
fn async_result_value_error_and_timeout() {
    hub::run(|| {
        let r: Rc<AsyncResult<String, String>> = Rc::new(AsyncResult::new());
        assert!(!r.ready());
        assert_eq!(r.try_get(), None);
        assert_eq!(
            r.get_timeout(Duration::from_millis(20)),
            Err(GetError::TimedOut)
        );
        let getters: Vec<_> = (0..10)
            .map(|_| {
                let r = r.clone();
                hub::spawn(move || r.get())
            })
            .collect();
        let r2 = r.clone();
        hub::spawn(move || {
            hub::sleep(Duration::from_millis(5));
            r2.set("v".to_string());
        });
        for g in getters {
            assert_eq!(g.join().unwrap(), Ok("v".to_string()));
        }
        assert!(r.ready() && r.successful());
        assert_eq!(r.get(), Ok("v".to_string())); // as often as asked
        r.set_error("bad".to_string());
        assert!(!r.successful());
        assert_eq!(r.get(), Err(GetError::Failed("bad".to_string())));
        r.wait().unwrap();
    });
}
