//! Values shared by the services and the gateway, parsed once at the edge ("parse, don't
//! validate"): a value of these types is valid by construction, so code behind the edge never
//! checks it again. Each type's rules are tested beside it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Bad input at the edge; the message is for the client.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum InvalidInput {
    #[error("customer_id must be 1..=64 characters of letters, digits, '-' or '_'")]
    CustomerId,
    #[error("item must be 1..=200 characters, none of them a control character")]
    Item,
    #[error("amount_minor must be between 1 and {AMOUNT_MINOR_MAX}")]
    Amount,
    #[error("currency must be 3 capital letters (ISO 4217)")]
    Currency,
    #[error("order id must be a UUID")]
    OrderId,
    #[error("idempotency key must be 1..={IDEMPOTENCY_KEY_BYTES_MAX} visible ASCII characters")]
    IdempotencyKey,
}

/// An order's id: a UUID, kept in its lower-case hyphenated form.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OrderId(String);

impl OrderId {
    /// Parses any UUID spelling.
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        uuid::Uuid::parse_str(raw)
            .map(|u| OrderId(u.to_string()))
            .map_err(|_| InvalidInput::OrderId)
    }

    /// A new id from 128 random bits (a version 4 UUID).
    pub fn from_random(bits: u128) -> Self {
        OrderId(
            uuid::Builder::from_random_bytes(bits.to_le_bytes())
                .into_uuid()
                .to_string(),
        )
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for OrderId {
    type Error = InvalidInput;
    fn try_from(s: String) -> Result<Self, InvalidInput> {
        OrderId::parse(&s)
    }
}

impl From<OrderId> for String {
    fn from(id: OrderId) -> String {
        id.0
    }
}

/// An ISO 4217 currency code: 3 capital letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        match raw.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Ok(Currency([a, b, c])),
            _ => Err(InvalidInput::Currency),
        }
    }

    pub fn as_str(&self) -> &str {
        // Three ASCII capitals by construction.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The largest amount one order may carry, in minor units.
pub const AMOUNT_MINOR_MAX: i64 = 1_000_000_000;

/// A positive amount of money in minor units (kopecks, cents) of a currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Money {
    amount_minor: i64,
    currency: Currency,
}

impl Money {
    /// `amount_minor` in 1..=[`AMOUNT_MINOR_MAX`] of `currency`.
    pub fn parse(amount_minor: i64, currency: &str) -> Result<Self, InvalidInput> {
        if !(1..=AMOUNT_MINOR_MAX).contains(&amount_minor) {
            return Err(InvalidInput::Amount);
        }
        Ok(Money {
            amount_minor,
            currency: Currency::parse(currency)?,
        })
    }

    pub fn amount_minor(&self) -> i64 {
        self.amount_minor
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }
}

/// Bound on an idempotency key's length.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 128;

/// A caller's idempotency key: 1..=128 visible ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let ok = !raw.is_empty()
            && raw.len() <= IDEMPOTENCY_KEY_BYTES_MAX
            && raw.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(IdempotencyKey(raw.to_owned()))
        } else {
            Err(InvalidInput::IdempotencyKey)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A validated order request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOrder {
    pub customer_id: String,
    pub item: String,
    pub price: Money,
}

impl NewOrder {
    /// Parses raw fields into a [`NewOrder`].
    pub fn parse(
        customer_id: &str,
        item: &str,
        amount_minor: i64,
        currency: &str,
    ) -> Result<Self, InvalidInput> {
        let id_ok = !customer_id.is_empty()
            && customer_id.len() <= 64
            && customer_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !id_ok {
            return Err(InvalidInput::CustomerId);
        }
        let item_chars = item.chars().count();
        if item_chars == 0 || item_chars > 200 || item.chars().any(char::is_control) {
            return Err(InvalidInput::Item);
        }
        Ok(NewOrder {
            customer_id: customer_id.into(),
            item: item.into(),
            price: Money::parse(amount_minor, currency)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_ids_are_uuids_in_one_spelling() {
        assert_eq!(OrderId::parse("not-a-uuid"), Err(InvalidInput::OrderId));
        let id = "5A0E4B1C-0000-4000-8000-00000000AB12";
        assert_eq!(
            OrderId::parse(id).map(|o| o.to_string()),
            Ok(id.to_lowercase())
        );
        let random = OrderId::from_random(42);
        assert_eq!(OrderId::parse(random.as_str()), Ok(random));
    }

    #[test]
    fn money_is_positive_bounded_and_in_a_currency() {
        let m = Money::parse(1500, "RUB").expect("valid");
        assert_eq!((m.amount_minor(), m.currency().as_str()), (1500, "RUB"));
        for (amount, currency, why) in [
            (0, "RUB", InvalidInput::Amount),
            (-5, "RUB", InvalidInput::Amount),
            (AMOUNT_MINOR_MAX + 1, "RUB", InvalidInput::Amount),
            (1, "rub", InvalidInput::Currency),
            (1, "RUBL", InvalidInput::Currency),
            (1, "RU", InvalidInput::Currency),
            (1, "ЁЁЁ", InvalidInput::Currency),
        ] {
            assert_eq!(
                Money::parse(amount, currency),
                Err(why),
                "{amount} {currency}"
            );
        }
        assert!(Money::parse(AMOUNT_MINOR_MAX, "USD").is_ok());
    }

    #[test]
    fn idempotency_keys_are_short_visible_ascii() {
        assert!(IdempotencyKey::parse("order-1:charge").is_ok());
        let long = "k".repeat(IDEMPOTENCY_KEY_BYTES_MAX + 1);
        for bad in ["", "has space", "tab\t", "ключ", long.as_str()] {
            assert_eq!(
                IdempotencyKey::parse(bad),
                Err(InvalidInput::IdempotencyKey),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn new_order_rejects_each_bad_field() {
        let ok = NewOrder::parse("cust-1", "bike", 1500, "RUB").expect("valid");
        assert_eq!(ok.price.amount_minor(), 1500);
        let cases: [(&str, &str, i64, &str, InvalidInput); 6] = [
            ("", "bike", 1, "RUB", InvalidInput::CustomerId),
            ("a b", "bike", 1, "RUB", InvalidInput::CustomerId),
            (&"x".repeat(65), "bike", 1, "RUB", InvalidInput::CustomerId),
            ("c", "", 1, "RUB", InvalidInput::Item),
            ("c", "a\u{0}b", 1, "RUB", InvalidInput::Item),
            ("c", "bike", 0, "RUB", InvalidInput::Amount),
        ];
        for (customer, item, amount, currency, why) in cases {
            assert_eq!(NewOrder::parse(customer, item, amount, currency), Err(why));
        }
        assert_eq!(
            NewOrder::parse("c", "bike", 1, "rub"),
            Err(InvalidInput::Currency)
        );
    }
}
