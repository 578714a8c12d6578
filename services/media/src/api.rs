//! The gRPC face of the media service.

use std::sync::Arc;

use contracts::media::{
    media_service_server::MediaService, CreateUploadRequest, Photo as PhotoMsg, PhotoRef,
    PhotoState,
};
use platform::{
    grpc::{require_id, store_status},
    ports::{Store, StoreError, Tx},
    Mutants,
};
use tonic::{Request, Response, Status};

use crate::{
    now_ms,
    objects::ObjectStore,
    store::{MediaQuery, MediaSchema, MediaWrite, Photo},
    Limits,
};

const SERVICE: &str = "media";

pub(crate) struct MediaApi {
    pub store: Arc<dyn Store<MediaSchema>>,
    pub objects: ObjectStore,
    pub limits: Limits,
    pub mutants: Mutants,
}

fn invalid(message: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{SERVICE}: {message}"))
}

fn unavailable(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("{SERVICE}: object storage: {e}"))
}

fn to_msg(p: &Photo) -> PhotoMsg {
    PhotoMsg {
        photo_id: p.photo_id.clone(),
        owner_id: p.owner_id.clone(),
        ad_id: p.ad_id.clone(),
        content_type: p.content_type.clone(),
        size_bytes: p.size_bytes,
        state: PhotoState::from_api_name(&p.state) as i32,
        reason: p.reason.clone(),
        ..PhotoMsg::default()
    }
}

/// The object key of a photo: grouped by ad, so an ad's objects can be listed together.
pub(crate) fn object_key(ad_id: &str, photo_id: &str) -> String {
    format!("photos/{ad_id}/{photo_id}")
}

impl MediaApi {
    async fn photo(&self, photo_id: &str) -> Result<Option<Photo>, Status> {
        let found = self
            .store
            .query(MediaQuery::Photo {
                photo_id: photo_id.to_owned(),
            })
            .await
            .map_err(|e| store_status(SERVICE, e))?;
        Ok(found.into_iter().next())
    }

    /// Records the first decision on a PENDING photo; when another decision came first, the
    /// photo as that one left it.
    async fn decide(&self, photo: &Photo, state: &str, reason: &str) -> Result<Photo, Status> {
        let tx = Tx::new().write(MediaWrite::Decide {
            photo_id: photo.photo_id.clone(),
            state: state.to_owned(),
            reason: reason.to_owned(),
            at_ms: now_ms(),
        });
        match self.store.commit(tx).await {
            Ok(()) => Ok(Photo {
                state: state.to_owned(),
                reason: reason.to_owned(),
                ..photo.clone()
            }),
            Err(StoreError::Conflict { .. }) => self
                .photo(&photo.photo_id)
                .await?
                .ok_or_else(|| Status::internal(format!("{SERVICE}: a decided photo vanished"))),
            Err(e) => Err(store_status(SERVICE, e)),
        }
    }

    /// `photo` as the caller sees it: a READY one with a fresh download URL.
    fn answer(&self, photo: &Photo) -> PhotoMsg {
        let mut msg = to_msg(photo);
        if photo.state == "READY" {
            let now = now_ms();
            msg.download_url =
                self.objects
                    .presign_get(&photo.object_key, now, self.limits.download_ttl);
            msg.url_expires_ms = now + self.limits.download_ttl.as_millis() as i64;
        }
        msg
    }

    /// Why the object `meta` cannot be `photo`, if it cannot.
    fn mismatch(photo: &Photo, meta: &crate::objects::ObjectMeta) -> Option<String> {
        if meta.size_bytes != photo.size_bytes {
            Some(format!(
                "the object holds {} bytes, not the {} declared",
                meta.size_bytes, photo.size_bytes
            ))
        } else if !meta.content_type.eq_ignore_ascii_case(&photo.content_type) {
            Some(format!(
                "the object is {:?}, not the {:?} declared",
                meta.content_type, photo.content_type
            ))
        } else {
            None
        }
    }
}

#[tonic::async_trait]
impl MediaService for MediaApi {
    async fn create_upload(
        &self,
        request: Request<CreateUploadRequest>,
    ) -> Result<Response<PhotoMsg>, Status> {
        let req = request.into_inner();
        require_id(SERVICE, "owner_id", &req.owner_id)?;
        require_id(SERVICE, "ad_id", &req.ad_id)?;
        let content_type = req.content_type.trim().to_ascii_lowercase();
        if !crate::CONTENT_TYPES.contains(&content_type.as_str()) {
            return Err(invalid(format!(
                "content_type must be one of {}",
                crate::CONTENT_TYPES.join(", ")
            )));
        }
        if !(1..=self.limits.photo_bytes_max).contains(&req.size_bytes) {
            return Err(invalid(format!(
                "size_bytes must be 1..={}",
                self.limits.photo_bytes_max
            )));
        }
        let now = now_ms();
        let window = self.limits.uploads_window.as_millis() as i64;
        let recent = self
            .store
            .query(MediaQuery::CreatedBy {
                owner_id: req.owner_id.clone(),
                since_ms: now - window,
                limit: self.limits.uploads_per_window,
            })
            .await
            .map_err(|e| store_status(SERVICE, e))?;
        if recent.len() >= self.limits.uploads_per_window as usize {
            let oldest = recent.last().map_or(now, |p| p.created_ms);
            let retry_after_s = ((oldest + window - now) / 1000).max(1);
            let mut status = Status::resource_exhausted(format!(
                "{SERVICE}: at most {} uploads per {} minutes",
                self.limits.uploads_per_window,
                self.limits.uploads_window.as_secs() / 60
            ));
            if let Ok(v) = retry_after_s.to_string().parse() {
                status.metadata_mut().insert("retry-after-s", v);
            }
            return Err(status);
        }
        let photo_id = platform::ids::uuid_v4().to_string();
        let ttl = self.limits.upload_ttl;
        let photo = Photo {
            object_key: object_key(&req.ad_id, &photo_id),
            photo_id,
            owner_id: req.owner_id,
            ad_id: req.ad_id,
            content_type,
            size_bytes: req.size_bytes,
            state: "PENDING".into(),
            reason: String::new(),
            created_ms: now,
            upload_expires_ms: now + ttl.as_millis() as i64,
            updated_ms: now,
        };
        self.store
            .commit(Tx::new().write(MediaWrite::Create(photo.clone())))
            .await
            .map_err(|e| store_status(SERVICE, e))?;
        let mut msg = to_msg(&photo);
        msg.upload_url = self.objects.presign_put(
            &photo.object_key,
            &photo.content_type,
            photo.size_bytes,
            now,
            ttl,
        );
        msg.url_expires_ms = photo.upload_expires_ms;
        Ok(Response::new(msg))
    }

    async fn complete_upload(
        &self,
        request: Request<PhotoRef>,
    ) -> Result<Response<PhotoMsg>, Status> {
        let req = request.into_inner();
        require_id(SERVICE, "photo_id", &req.photo_id)?;
        require_id(SERVICE, "caller_id", &req.caller_id)?;
        let photo = self
            .photo(&req.photo_id)
            .await?
            .ok_or_else(|| Status::not_found(format!("{SERVICE}: no photo {}", req.photo_id)))?;
        if photo.owner_id != req.caller_id {
            return Err(Status::permission_denied(format!(
                "{SERVICE}: only its uploader completes a photo"
            )));
        }
        let photo = match photo.state.as_str() {
            "PENDING" if self.mutants.upload_unchecked => self.decide(&photo, "READY", "").await?,
            "PENDING" => {
                let now = now_ms();
                let meta = self
                    .objects
                    .head(&photo.object_key, now)
                    .await
                    .map_err(unavailable)?;
                match meta {
                    None => {
                        return Err(Status::failed_precondition(format!(
                            "{SERVICE}: nothing was uploaded for photo {} yet",
                            photo.photo_id
                        )))
                    }
                    Some(meta) => match Self::mismatch(&photo, &meta) {
                        None => self.decide(&photo, "READY", "").await?,
                        Some(reason) => {
                            let decided = self.decide(&photo, "REJECTED", &reason).await?;
                            if decided.state == "REJECTED" {
                                // Best effort: the sweeper does not come back for it.
                                if let Err(e) = self.objects.delete(&photo.object_key, now).await {
                                    tracing::warn!(error = %e, key = %photo.object_key, "a rejected object stays");
                                }
                            }
                            decided
                        }
                    },
                }
            }
            _ => photo,
        };
        if photo.state == "REJECTED" {
            return Err(Status::failed_precondition(format!(
                "{SERVICE}: photo {} was rejected: {}",
                photo.photo_id, photo.reason
            )));
        }
        Ok(Response::new(self.answer(&photo)))
    }

    async fn get_photo(&self, request: Request<PhotoRef>) -> Result<Response<PhotoMsg>, Status> {
        let req = request.into_inner();
        require_id(SERVICE, "photo_id", &req.photo_id)?;
        match self.photo(&req.photo_id).await? {
            Some(photo) if photo.state == "READY" => Ok(Response::new(self.answer(&photo))),
            _ => Err(Status::not_found(format!(
                "{SERVICE}: no photo {}",
                req.photo_id
            ))),
        }
    }
}

/// Rejects photos whose upload was never completed, oldest first, and deletes whatever was
/// uploaded for them. The decision comes first: a completion racing the sweeper either wins
/// (the object stays) or finds the photo REJECTED.
pub(crate) async fn sweep(
    store: &dyn Store<MediaSchema>,
    objects: &ObjectStore,
    grace: std::time::Duration,
) -> Result<usize, Status> {
    let now = now_ms();
    let abandoned = store
        .query(MediaQuery::Abandoned {
            before_ms: now - grace.as_millis() as i64,
            limit: 100,
        })
        .await
        .map_err(|e| store_status(SERVICE, e))?;
    let mut swept = 0;
    for photo in abandoned {
        let tx = Tx::new().write(MediaWrite::Decide {
            photo_id: photo.photo_id.clone(),
            state: "REJECTED".into(),
            reason: "the upload was not completed in time".into(),
            at_ms: now,
        });
        match store.commit(tx).await {
            Ok(()) => {
                swept += 1;
                if let Err(e) = objects.delete(&photo.object_key, now).await {
                    tracing::warn!(error = %e, key = %photo.object_key, "an abandoned object stays");
                }
            }
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(store_status(SERVICE, e)),
        }
    }
    Ok(swept)
}
