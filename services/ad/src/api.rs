//! The gRPC face of the ad service.

use contracts::ad::{
    ad_service_server::AdService, Ad as AdMsg, AdFields, AdRef, AdStatus, AttachPhotoRequest,
    CreateAdRequest, DeleteAdRequest, UpdateAdRequest,
};
use platform::{
    grpc::{idempotency_key, require_id, store_status},
    outbox::OutboxSignal,
    ports::{StoreError, Tx, Versioned},
    Infra,
};
use tonic::{Request, Response, Status};

use crate::{
    changed_event, now_ms,
    store::{
        Ad, AdQuery, AdSchema, AdWrite, DESCRIPTION_CHARS_MAX, PHOTOS_MAX, SLUG_CHARS, TITLE_CHARS,
    },
};

const SERVICE: &str = "ad";

pub(crate) struct AdApi {
    pub infra: Infra<AdSchema>,
    pub outbox: OutboxSignal,
}

fn invalid(message: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{SERVICE}: {message}"))
}

pub(crate) fn to_msg(a: &Versioned<Ad>) -> AdMsg {
    let v = &a.value;
    AdMsg {
        ad_id: v.ad_id.clone(),
        owner_id: v.owner_id.clone(),
        fields: Some(AdFields {
            title: v.title.clone(),
            description: v.description.clone(),
            price_minor: v.price_minor,
            currency: v.currency.clone(),
            category: v.category.clone(),
            region: v.region.clone(),
            photos: v.photos.clone(),
        }),
        status: AdStatus::from_api_name(&v.status) as i32,
        version: a.version,
        created_ms: v.created_ms,
        updated_ms: v.updated_ms,
    }
}

/// A slug: 1..=64 of `a-z`, `0-9` and `-`.
fn slug(field: &str, raw: &str) -> Result<String, Status> {
    let ok = SLUG_CHARS.contains(&raw.chars().count())
        && raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(invalid(format!(
            "{field} must be 1..=64 characters of a-z, 0-9 and -"
        )))
    }
}

/// The fields of an ad, checked, applied to `ad`.
fn apply_fields(ad: &mut Ad, f: Option<AdFields>) -> Result<(), Status> {
    let f = f.ok_or_else(|| invalid("fields are required"))?;
    let title = f.title.trim();
    if !TITLE_CHARS.contains(&title.chars().count()) || title.chars().any(char::is_control) {
        return Err(invalid("title must be 1..=200 printable characters"));
    }
    if f.description
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(invalid(
            "description must not hold control characters but line breaks and tabs",
        ));
    }
    if f.description.chars().count() > DESCRIPTION_CHARS_MAX {
        return Err(invalid(format!(
            "description must be at most {DESCRIPTION_CHARS_MAX} characters"
        )));
    }
    let price = domain::Money::parse(f.price_minor, &f.currency)
        .map_err(|e| invalid(format!("price: {e}")))?;
    if f.photos.len() > PHOTOS_MAX {
        return Err(invalid(format!("at most {PHOTOS_MAX} photos")));
    }
    for (i, p) in f.photos.iter().enumerate() {
        require_id(SERVICE, "photos[]", p)?;
        if !ad.photos.contains(p) {
            return Err(invalid(format!(
                "photo {p} is not the ad's: photos are added by uploading them"
            )));
        }
        if f.photos[..i].contains(p) {
            return Err(invalid(format!("photo {p} is listed twice")));
        }
    }
    ad.title = title.to_owned();
    ad.description = f.description;
    ad.price_minor = price.amount_minor();
    ad.currency = price.currency().to_string();
    ad.category = slug("category", &f.category)?;
    ad.region = slug("region", &f.region)?;
    ad.photos = f.photos;
    Ok(())
}

impl AdApi {
    async fn read(&self, query: AdQuery) -> Result<Option<Versioned<Ad>>, Status> {
        self.infra
            .store
            .query(query)
            .await
            .map_err(|e| store_status(SERVICE, e))
    }

    /// The ad `ad_id` at `expected_version` of `caller_id`, editable.
    async fn editable(
        &self,
        ad_id: &str,
        caller_id: &str,
        expected_version: i64,
    ) -> Result<Versioned<Ad>, Status> {
        require_id(SERVICE, "ad_id", ad_id)?;
        require_id(SERVICE, "caller_id", caller_id)?;
        let current = self
            .read(AdQuery::Ad {
                ad_id: ad_id.to_owned(),
            })
            .await?
            .ok_or_else(|| Status::not_found(format!("{SERVICE}: no ad {ad_id}")))?;
        if current.value.owner_id != caller_id {
            return Err(Status::permission_denied(format!(
                "{SERVICE}: only the owner edits an ad"
            )));
        }
        if matches!(current.value.status.as_str(), "BANNED" | "DELETED") {
            return Err(Status::failed_precondition(format!(
                "{SERVICE}: the ad is {} and cannot change",
                current.value.status
            )));
        }
        if current.version != expected_version {
            return Err(Status::failed_precondition(format!(
                "{SERVICE}: the ad is at version {}, not {expected_version}",
                current.version
            )));
        }
        Ok(current)
    }

    /// Commits `ad` over version `version` with its event.
    async fn commit_update(&self, ad: Ad, version: i64) -> Result<Versioned<Ad>, Status> {
        let event = changed_event(&ad, version + 1);
        let tx = Tx::new()
            .write(AdWrite::Update {
                ad: ad.clone(),
                version,
            })
            .emit(event);
        match self.infra.store.commit(tx).await {
            Ok(()) => {
                self.outbox.notify();
                Ok(Versioned {
                    version: version + 1,
                    value: ad,
                })
            }
            Err(StoreError::Conflict { .. }) => Err(Status::failed_precondition(format!(
                "{SERVICE}: the ad changed meanwhile; read it again"
            ))),
            Err(e) => Err(store_status(SERVICE, e)),
        }
    }
}

#[tonic::async_trait]
impl AdService for AdApi {
    async fn create_ad(
        &self,
        request: Request<CreateAdRequest>,
    ) -> Result<Response<AdMsg>, Status> {
        let key = idempotency_key(SERVICE, &request)?;
        let req = request.into_inner();
        require_id(SERVICE, "owner_id", &req.owner_id)?;
        let now = now_ms();
        let mut ad = Ad {
            ad_id: platform::ids::uuid_v4().to_string(),
            owner_id: req.owner_id,
            title: String::new(),
            description: String::new(),
            price_minor: 0,
            currency: String::new(),
            category: String::new(),
            region: String::new(),
            photos: Vec::new(),
            status: "ACTIVE".into(),
            created_ms: now,
            updated_ms: now,
        };
        apply_fields(&mut ad, req.fields)?;
        if let Some(existing) = self
            .read(AdQuery::ByRequest {
                request_key: key.clone(),
            })
            .await?
        {
            return Ok(Response::new(to_msg(&existing)));
        }
        let tx = Tx::new()
            .write(AdWrite::Create {
                ad: ad.clone(),
                request_key: key.clone(),
            })
            .emit(changed_event(&ad, 1));
        match self.infra.store.commit(tx).await {
            Ok(()) => {
                self.outbox.notify();
                Ok(Response::new(to_msg(&Versioned {
                    version: 1,
                    value: ad,
                })))
            }
            // A concurrent retry with the same key won: answer with its ad.
            Err(StoreError::Conflict { .. }) => self
                .read(AdQuery::ByRequest { request_key: key })
                .await?
                .map(|a| Response::new(to_msg(&a)))
                .ok_or_else(|| Status::aborted(format!("{SERVICE}: concurrent create, retry"))),
            Err(e) => Err(store_status(SERVICE, e)),
        }
    }

    async fn get_ad(&self, request: Request<AdRef>) -> Result<Response<AdMsg>, Status> {
        let ad_id = request.into_inner().ad_id;
        require_id(SERVICE, "ad_id", &ad_id)?;
        let ad = self
            .read(AdQuery::Ad {
                ad_id: ad_id.clone(),
            })
            .await?
            .ok_or_else(|| Status::not_found(format!("{SERVICE}: no ad {ad_id}")))?;
        Ok(Response::new(to_msg(&ad)))
    }

    async fn update_ad(
        &self,
        request: Request<UpdateAdRequest>,
    ) -> Result<Response<AdMsg>, Status> {
        let req = request.into_inner();
        let status = match AdStatus::try_from(req.status).unwrap_or_default() {
            AdStatus::Active => "ACTIVE",
            AdStatus::Hidden => "HIDDEN",
            _ => return Err(invalid("status must be ACTIVE or HIDDEN")),
        };
        let current = self
            .editable(&req.ad_id, &req.caller_id, req.expected_version)
            .await?;
        let mut ad = current.value.clone();
        apply_fields(&mut ad, req.fields)?;
        ad.status = status.into();
        ad.updated_ms = now_ms();
        let updated = self.commit_update(ad, current.version).await?;
        Ok(Response::new(to_msg(&updated)))
    }

    async fn delete_ad(
        &self,
        request: Request<DeleteAdRequest>,
    ) -> Result<Response<AdMsg>, Status> {
        let req = request.into_inner();
        let current = self
            .editable(&req.ad_id, &req.caller_id, req.expected_version)
            .await?;
        let ad = Ad {
            status: "DELETED".into(),
            updated_ms: now_ms(),
            ..current.value.clone()
        };
        let deleted = self.commit_update(ad, current.version).await?;
        Ok(Response::new(to_msg(&deleted)))
    }

    async fn attach_photo(
        &self,
        request: Request<AttachPhotoRequest>,
    ) -> Result<Response<AdMsg>, Status> {
        let req = request.into_inner();
        require_id(SERVICE, "photo_id", &req.photo_id)?;
        // Attaching names no version: a concurrent edit only makes it read again.
        for _ in 0..ATTACH_ATTEMPTS {
            let version = self
                .read(AdQuery::Ad {
                    ad_id: req.ad_id.clone(),
                })
                .await?
                .map_or(0, |a| a.version);
            let current = self.editable(&req.ad_id, &req.caller_id, version).await?;
            if current.value.photos.contains(&req.photo_id) {
                return Ok(Response::new(to_msg(&current)));
            }
            if current.value.photos.len() >= PHOTOS_MAX {
                return Err(Status::failed_precondition(format!(
                    "{SERVICE}: the ad has its {PHOTOS_MAX} photos already"
                )));
            }
            let mut ad = current.value.clone();
            ad.photos.push(req.photo_id.clone());
            ad.updated_ms = now_ms();
            match self.commit_update(ad, current.version).await {
                Ok(updated) => return Ok(Response::new(to_msg(&updated))),
                Err(e) if e.code() == tonic::Code::FailedPrecondition => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Status::aborted(format!(
            "{SERVICE}: the ad keeps changing; attach the photo again"
        )))
    }
}

/// Reads and commits of one AttachPhoto before it gives up to concurrent edits.
const ATTACH_ATTEMPTS: usize = 5;
