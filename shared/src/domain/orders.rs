//! An order's values, valid by construction: a line's quantity, the lines of a cart
//! (duplicates merged), and the order's status with the only moves the contract allows.
//! No I/O: the orders feature module turns a move into a write conditioned on the status
//! it starts from, so two racing moves cannot both happen.

use serde::{Deserialize, Serialize};

use super::{Invalid, ProductId};

/// Units of one product in an order: 1 to 1000.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Quantity(u32);

impl Quantity {
    pub const MAX: i64 = 1000;

    pub fn parse(raw: i64) -> Result<Self, Invalid> {
        u32::try_from(raw)
            .ok()
            .filter(|units| (1..=Self::MAX).contains(&i64::from(*units)))
            .map(Self)
            .ok_or_else(|| Invalid(format!("must be a whole number from 1 to {}", Self::MAX)))
    }

    pub fn units(self) -> u32 {
        self.0
    }
}

/// The lines of a cart: each product once (lines naming one product are merged, and the
/// merged quantity must still be a [`Quantity`]), in the order first named, 1 to
/// `max_lines` of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cart(Vec<(ProductId, Quantity)>);

impl Cart {
    /// The cart of `lines` (product, quantity as sent), or which line is wrong and why.
    pub fn parse(lines: &[(ProductId, i64)], max_lines: usize) -> Result<Self, (usize, Invalid)> {
        if lines.is_empty() {
            return Err((0, Invalid("an order needs at least one line".into())));
        }
        let mut merged: Vec<(ProductId, i64)> = Vec::new();
        for (n, (product, quantity)) in lines.iter().enumerate() {
            Quantity::parse(*quantity).map_err(|e| (n, e))?;
            match merged.iter_mut().find(|(p, _)| p == product) {
                Some((_, total)) => {
                    *total += quantity;
                    Quantity::parse(*total).map_err(|_| {
                        (
                            n,
                            Invalid(format!(
                                "names a product again: together its lines exceed {}",
                                Quantity::MAX
                            )),
                        )
                    })?;
                }
                None => merged.push((product.clone(), *quantity)),
            }
        }
        if merged.len() > max_lines {
            return Err((
                max_lines,
                Invalid(format!("an order holds at most {max_lines} products")),
            ));
        }
        let lines = merged
            .into_iter()
            .map(|(product, quantity)| Quantity::parse(quantity).map(|q| (product, q)))
            .collect::<Result<_, _>>()
            .map_err(|e| (0, e))?;
        Ok(Self(lines))
    }

    pub fn lines(&self) -> &[(ProductId, Quantity)] {
        &self.0
    }
}

/// Where an order is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    Fulfilled,
    Cancelled,
    Refunded,
}

/// What can happen to an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Move {
    /// The provider says the payment succeeded (for the order's amount and currency).
    Pay,
    /// The customer or staff cancel it.
    Cancel,
    /// Its payment window passed unpaid.
    Expire,
    /// Staff send it.
    Fulfil,
    /// The provider says its charge was refunded.
    Refund,
}

/// A move the order's status does not allow (a 409, and nothing changes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("an order that is {from} cannot be {action}")]
pub struct IllegalMove {
    pub from: &'static str,
    pub action: &'static str,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingPayment => "pending_payment",
            Self::Paid => "paid",
            Self::Fulfilled => "fulfilled",
            Self::Cancelled => "cancelled",
            Self::Refunded => "refunded",
        }
    }

    /// The status after `action`, as DESIGN.md's routes and webhook events say:
    /// pending_payment → paid (paid), cancelled (cancelled or expired); paid → fulfilled,
    /// cancelled (its refund asked for), refunded; fulfilled → refunded. Nothing leaves
    /// cancelled or refunded.
    pub fn after(self, action: Move) -> Result<Self, IllegalMove> {
        use Move::*;
        use OrderStatus::*;
        match (self, action) {
            (PendingPayment, Pay) => Ok(Paid),
            (PendingPayment, Cancel | Expire) => Ok(Cancelled),
            (Paid, Fulfil) => Ok(Fulfilled),
            (Paid, Cancel) => Ok(Cancelled),
            (Paid | Fulfilled, Refund) => Ok(Refunded),
            (from, action) => Err(IllegalMove {
                from: from.as_str(),
                action: match action {
                    Pay => "paid",
                    Cancel => "cancelled",
                    Expire => "expired",
                    Fulfil => "fulfilled",
                    Refund => "refunded",
                },
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TypedId as _;

    fn product(n: u32) -> ProductId {
        ProductId::parse(&format!("prod_01JD{n:022}")).unwrap()
    }

    #[test]
    fn a_quantity_is_one_to_a_thousand() {
        assert_eq!(Quantity::parse(1).unwrap().units(), 1);
        assert_eq!(Quantity::parse(1000).unwrap().units(), 1000);
        for bad in [0, -1, 1001, i64::MAX] {
            assert!(Quantity::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lines_naming_one_product_are_merged_within_the_quantity_limit() {
        let cart = Cart::parse(&[(product(1), 2), (product(2), 1), (product(1), 3)], 100).unwrap();
        let merged: Vec<(ProductId, u32)> = cart
            .lines()
            .iter()
            .map(|(p, q)| (p.clone(), q.units()))
            .collect();
        assert_eq!(merged, [(product(1), 5), (product(2), 1)]);
        let over = Cart::parse(&[(product(1), 600), (product(1), 401)], 100).unwrap_err();
        assert_eq!(over.0, 1, "the line that went over");
    }

    #[test]
    fn a_cart_is_one_to_the_most_lines_of_valid_quantities() {
        assert!(Cart::parse(&[], 100).is_err());
        assert_eq!(Cart::parse(&[(product(1), 0)], 100).unwrap_err().0, 0);
        let many: Vec<(ProductId, i64)> = (0..5).map(|n| (product(n), 1)).collect();
        assert!(Cart::parse(&many, 5).is_ok());
        assert!(Cart::parse(&many, 4).is_err());
    }

    #[test]
    fn only_the_contracts_moves_are_allowed() {
        use Move::*;
        use OrderStatus::*;
        let all = [PendingPayment, Paid, Fulfilled, Cancelled, Refunded];
        let moves = [Pay, Cancel, Expire, Fulfil, Refund];
        let allowed = [
            (PendingPayment, Pay, Paid),
            (PendingPayment, Cancel, Cancelled),
            (PendingPayment, Expire, Cancelled),
            (Paid, Fulfil, Fulfilled),
            (Paid, Cancel, Cancelled),
            (Paid, Refund, Refunded),
            (Fulfilled, Refund, Refunded),
        ];
        for from in all {
            for action in moves {
                let expected = allowed
                    .iter()
                    .find(|(f, a, _)| *f == from && *a == action)
                    .map(|(_, _, to)| *to);
                assert_eq!(from.after(action).ok(), expected, "{from:?} {action:?}");
            }
        }
        assert_eq!(
            Refunded.after(Cancel).unwrap_err().to_string(),
            "an order that is refunded cannot be cancelled"
        );
    }
}
