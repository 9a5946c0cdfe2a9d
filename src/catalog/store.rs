//! The `products` collection.

use mongodb::bson::{DateTime, doc, oid::ObjectId};
use mongodb::{Collection, Database};

use super::{NewProduct, Product};
use crate::error::StoreError;
use crate::ids::ProductId;

pub(super) const COLLECTION: &str = "products";

#[derive(Debug, Clone)]
pub struct ProductStore {
    coll: Collection<Product>,
}

impl ProductStore {
    pub fn new(db: &Database) -> Self {
        Self {
            coll: db.collection(COLLECTION),
        }
    }

    pub async fn insert(&self, new: NewProduct) -> Result<Product, StoreError> {
        let p = Product {
            id: ObjectId::new(),
            name: new.name,
            description: new.description,
            price_cents: new.price_cents,
            created_at: DateTime::now(),
        };
        self.coll.insert_one(&p).await?;
        Ok(p)
    }

    pub async fn get(&self, id: ProductId) -> Result<Option<Product>, StoreError> {
        Ok(self.coll.find_one(doc! { "_id": id.oid() }).await?)
    }

    pub async fn list(&self, offset: u64, limit: i64) -> Result<Vec<Product>, StoreError> {
        crate::mongo::find_page(&self.coll, doc! {}, doc! { "_id": 1 }, offset, limit).await
    }
}
