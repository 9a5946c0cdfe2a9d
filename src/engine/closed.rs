//! In-memory answers for sales that Redis has said are over.
//!
//! Stock never rises within a sale event and an ended or cancelled sale never
//! re-opens (a rerun is a new sale id), so once Redis has answered SOLD_OUT or
//! ENDED for a sale, this instance can give the same answer without asking.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::ids::SaleId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    SoldOut,
    Ended { end_ms: i64, cancelled: bool },
}

/// Sales this instance knows to be closed.
#[derive(Debug, Default)]
pub struct ClosedSales {
    map: RwLock<HashMap<SaleId, Closed>>,
}

impl ClosedSales {
    pub fn get(&self, sale: SaleId) -> Option<Closed> {
        self.map.read().ok()?.get(&sale).copied()
    }

    /// Records that Redis said `sale` is closed. An ended state wins over
    /// sold out, since it is the more final answer.
    pub fn mark(&self, sale: SaleId, closed: Closed) {
        if let Ok(mut m) = self.map.write() {
            let entry = m.entry(sale).or_insert(closed);
            if matches!(closed, Closed::Ended { .. }) {
                *entry = closed;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ended_overrides_sold_out_but_not_the_reverse() {
        let c = ClosedSales::default();
        let s = SaleId::new();
        assert_eq!(c.get(s), None);
        c.mark(s, Closed::SoldOut);
        assert_eq!(c.get(s), Some(Closed::SoldOut));
        let ended = Closed::Ended {
            end_ms: 1,
            cancelled: true,
        };
        c.mark(s, ended);
        assert_eq!(c.get(s), Some(ended));
        c.mark(s, Closed::SoldOut);
        assert_eq!(c.get(s), Some(ended));
    }
}
