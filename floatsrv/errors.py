"""The domain error tree. Domain code raises these; each API surface maps them to HTTP in one table.

    FloatsrvError                         (code)
    ├── InvalidRequest                    validation_error
    │   ├── MissingParameters             missing_parameters
    │   ├── InvalidLicenseId              invalid_license_id
    │   ├── InvalidJson                   invalid_json
    │   ├── UnsupportedMediaType          unsupported_media_type
    │   ├── PayloadTooLarge               payload_too_large
    │   ├── RequestTimeout                request_timeout
    │   ├── BorrowUntilNotValid           borrow_until_not_valid
    │   ├── NegativeConsumptionsNotAllowed negative_consumptions_not_allowed
    │   ├── WeakPassword                  weak_password
    │   ├── InvalidCurrentPassword        invalid_current_password
    │   ├── InvalidQuantity               invalid_quantity
    │   ├── TimestampInFuture             timestamp_in_future
    │   └── EventTooOld                   event_too_old
    ├── NotFound                          not_found
    │   ├── UnknownProduct                unknown_product
    │   ├── LicenseNotFound               license_not_found
    │   ├── FeatureNotFound               unsupported_product_feature
    │   ├── RegistrationNotFound          device_not_found
    │   ├── FeatureSeatNotFound           floating_feature_device_not_in_use
    │   ├── SeatNotFound                  seat_not_found
    │   ├── UserNotFound                  user_not_found
    │   ├── TokenNotFound                 token_not_found
    │   ├── ApiKeyNotFound                api_key_not_found
    │   ├── AddonNotFound                 addon_not_found
    │   ├── AddonNotActive                addon_not_active
    │   └── LicenseFileNotFound           license_file_not_found
    ├── Conflict                          conflict
    │   ├── UserExists                    user_exists
    │   ├── ApiKeyExists                  api_key_exists
    │   ├── ManagedByConfig               user_managed_by_config
    │   ├── IdempotencyConflict           idempotency_key_reused
    │   ├── AddonExists                   addon_exists
    │   ├── AddonInUse                    addon_in_use
    │   ├── AddonAlreadyActive            addon_already_active
    │   ├── AddonFromLicenseFile          addon_from_license_file
    │   └── CreditGrantApplied            credit_grant_already_applied
    ├── LicenseUnusable
    │   ├── LicenseNotEnabled             license_not_enabled
    │   ├── LicenseNotActive              license_not_active
    │   ├── LicenseExpired                license_expired
    │   ├── FeatureExpired                license_feature_expired
    │   └── NotEntitled                   not_entitled
    ├── WrongKind
    │   ├── LicenseNotConsumption         license_not_consumption
    │   ├── FeatureNotConsumption         feature_not_consumption
    │   ├── FeatureNotFloating            feature_not_floating
    │   ├── FeatureNotMetered             feature_not_metered
    │   └── AddonModelMismatch            addon_model_mismatch
    ├── LimitReached
    │   ├── SeatsExhausted                floating_not_available
    │   ├── LicenseConsumptionExhausted   license_not_enough_consumptions
    │   ├── FeatureConsumptionExhausted   feature_not_enough_consumptions
    │   ├── ConsumptionBelowZero          consumption_below_zero
    │   ├── UsageLimitExceeded            limit_exceeded
    │   └── InsufficientCredits           insufficient_credits
    ├── LicenseFileRefused                license_file_refused, and one subclass per reason: license_file_*
    ├── NotGrantedByVendor                not_granted_by_vendor
    ├── AuthError
    │   ├── Unauthenticated               unauthorized
    │   ├── InvalidToken                  invalid_token
    │   ├── TooManyRequests               too_many_requests
    │   ├── LoginBusy                     login_busy
    │   └── Forbidden                     forbidden
    │       ├── PasswordChangeRequired    password_change_required
    │       └── SeatOwnedByAnotherLogin   seat_owned_by_another_login
    └── StorageUnavailable                storage_unavailable
        └── StorageFull                   storage_full

Codes are stable: clients (and the LicenseSpring SDK, which upper-cases some of them) match on them.
Messages are for humans and may change. `detail` carries machine-readable context (never secrets).
"""

from __future__ import annotations

from typing import Any, ClassVar


class FloatsrvError(Exception):
    code: ClassVar[str] = "error"
    default_message: ClassVar[str] = "request failed"

    def __init__(self, message: str | None = None, **detail: Any) -> None:
        self.message = message or self.default_message
        self.detail = detail
        super().__init__(self.message)


class InvalidRequest(FloatsrvError):
    code = "validation_error"
    default_message = "the request is not valid"


class InvalidLicenseId(InvalidRequest):  # /api/v5/license/None/...: an SDK without a license id
    code = "invalid_license_id"
    default_message = "the license id in the path must be digits"


class MissingParameters(InvalidRequest):
    code = "missing_parameters"
    default_message = "a required parameter is missing"


class InvalidJson(InvalidRequest):
    code = "invalid_json"
    default_message = "the request body is not valid JSON"


class UnsupportedMediaType(InvalidRequest):
    code = "unsupported_media_type"
    default_message = "send the request body as JSON (Content-Type: application/json)"


class PayloadTooLarge(InvalidRequest):
    code = "payload_too_large"
    default_message = "the request body is too large"


class RequestTimeout(InvalidRequest):
    code = "request_timeout"
    default_message = "the request body did not arrive in time"


class BorrowUntilNotValid(InvalidRequest):
    code = "borrow_until_not_valid"
    default_message = "borrowed_until is not valid for this license"


class NegativeConsumptionsNotAllowed(InvalidRequest):
    code = "negative_consumptions_not_allowed"
    default_message = "negative consumptions are not allowed"


class WeakPassword(InvalidRequest):
    code = "weak_password"
    default_message = "the new password is too weak"


class InvalidCurrentPassword(InvalidRequest):
    code = "invalid_current_password"
    default_message = "the current password is not right"


class InvalidQuantity(InvalidRequest):
    code = "invalid_quantity"
    default_message = "the quantity is not valid"


class TimestampInFuture(InvalidRequest):
    code = "timestamp_in_future"
    default_message = "occurred_at is too far in the future"


class EventTooOld(InvalidRequest):
    code = "event_too_old"
    default_message = "occurred_at is older than the lateness window"


class NotFound(FloatsrvError):
    code = "not_found"
    default_message = "not found"


class UnknownProduct(NotFound):
    code = "unknown_product"
    default_message = "unknown product"


class LicenseNotFound(NotFound):
    code = "license_not_found"
    default_message = "license not found"


class FeatureNotFound(NotFound):
    code = "unsupported_product_feature"
    default_message = "the license has no such feature"


class RegistrationNotFound(NotFound):
    code = "device_not_found"
    default_message = "this user holds no registration on the license"


class FeatureSeatNotFound(NotFound):
    code = "floating_feature_device_not_in_use"
    default_message = "this user holds no seat of the feature"


class SeatNotFound(NotFound):
    code = "seat_not_found"
    default_message = "no such held seat"


class UserNotFound(NotFound):
    code = "user_not_found"
    default_message = "no such user"


class TokenNotFound(NotFound):
    code = "token_not_found"
    default_message = "no such live token"


class ApiKeyNotFound(NotFound):
    code = "api_key_not_found"
    default_message = "no such live API key"


class AddonNotFound(NotFound):
    code = "addon_not_found"
    default_message = "no such add-on"


class AddonNotActive(NotFound):
    code = "addon_not_active"
    default_message = "the add-on is not active on this license"


class LicenseFileNotFound(NotFound):
    code = "license_file_not_found"
    default_message = "no such license file in force"


class Conflict(FloatsrvError):
    code = "conflict"
    default_message = "conflicts with the current state"


class UserExists(Conflict):
    code = "user_exists"
    default_message = "a user with this name exists"


class ApiKeyExists(Conflict):
    code = "api_key_exists"
    default_message = "a live API key with this name exists"


class ManagedByConfig(Conflict):
    code = "user_managed_by_config"
    default_message = "this user is declared in the config file (or environment); change it there"


class IdempotencyConflict(Conflict):
    code = "idempotency_key_reused"
    default_message = "this event_id was already used with a different body"


class AddonExists(Conflict):
    code = "addon_exists"
    default_message = "a live add-on for this feature exists (one add-on per feature)"


class AddonInUse(Conflict):
    code = "addon_in_use"
    default_message = "the add-on is active on a license; deactivate it there first"


class AddonAlreadyActive(Conflict):
    code = "addon_already_active"
    default_message = "the add-on is already active on this license"


class AddonFromLicenseFile(Conflict):
    code = "addon_from_license_file"
    default_message = "the add-on is granted by a vendor's license file; it changes only with a new file"


class CreditGrantApplied(Conflict):
    code = "credit_grant_already_applied"
    default_message = "this credit grant was applied to the license before"


class LicenseUnusable(FloatsrvError):
    code = "license_unusable"


class LicenseNotEnabled(LicenseUnusable):
    code = "license_not_enabled"
    default_message = "the license is disabled"


class LicenseNotActive(LicenseUnusable):
    code = "license_not_active"
    default_message = "the license is not active"


class LicenseExpired(LicenseUnusable):
    code = "license_expired"
    default_message = "the license has expired"


class FeatureExpired(LicenseUnusable):
    code = "license_feature_expired"
    default_message = "the feature has expired"


class NotEntitled(LicenseUnusable):
    code = "not_entitled"
    default_message = "the feature is not enabled on this license"


class WrongKind(FloatsrvError):
    code = "wrong_kind"


class LicenseNotConsumption(WrongKind):
    code = "license_not_consumption"
    default_message = "the license is not a consumption license"


class FeatureNotConsumption(WrongKind):
    code = "feature_not_consumption"
    default_message = "the feature is not a consumption feature"


class FeatureNotFloating(WrongKind):
    code = "feature_not_floating"
    default_message = "the feature is not a floating feature"


class FeatureNotMetered(WrongKind):
    code = "feature_not_metered"
    default_message = "this feature is not metered by usage events"


class AddonModelMismatch(WrongKind):
    code = "addon_model_mismatch"
    default_message = "the add-on's consumption model does not match the feature's"


class LimitReached(FloatsrvError):
    code = "limit_reached"


class SeatsExhausted(LimitReached):
    code = "floating_not_available"
    default_message = "no floating seat is available"


class LicenseConsumptionExhausted(LimitReached):
    code = "license_not_enough_consumptions"
    default_message = "not enough consumptions left on the license"


class FeatureConsumptionExhausted(LimitReached):
    code = "feature_not_enough_consumptions"
    default_message = "not enough consumptions left on the feature"


class ConsumptionBelowZero(LimitReached):
    code = "consumption_below_zero"
    default_message = "the consumption total cannot go below zero"


class UsageLimitExceeded(LimitReached):
    code = "limit_exceeded"
    default_message = "the feature has no room for this quantity"


class InsufficientCredits(LimitReached):
    code = "insufficient_credits"
    default_message = "not enough credits"


class LicenseFileRefused(FloatsrvError):
    """A license file was refused; nothing changed. Each subclass names why."""

    code = "license_file_refused"
    default_message = "the license file was refused"


class LicenseFileMalformed(LicenseFileRefused):
    code = "license_file_malformed"
    default_message = "not a floatsrv license file (armour, envelope or base64 is damaged)"


class LicenseFileAlgUnsupported(LicenseFileRefused):
    code = "license_file_alg_unsupported"
    default_message = "the license file names a signature algorithm floatsrv does not accept"


class LicenseFileKeyUntrusted(LicenseFileRefused):
    code = "license_file_key_untrusted"
    default_message = "the license file is signed by a key this floatsrv build does not trust"


class LicenseFileSignatureInvalid(LicenseFileRefused):
    code = "license_file_signature_invalid"
    default_message = "the license file's signature does not match its contents"


class LicenseFilePayloadInvalid(LicenseFileRefused):
    code = "license_file_payload_invalid"
    default_message = "the license file's contents are not valid"


class LicenseFileUnsignable(LicenseFileRefused):
    code = "license_file_unsignable"
    default_message = "with api_v5 on, the file's metadata or customer holds a value a signed reply cannot carry"


class LicenseFileNotYetValid(LicenseFileRefused):
    code = "license_file_not_yet_valid"
    default_message = "the license file is not valid yet (not_before lies in the future)"


class LicenseFileExpired(LicenseFileRefused):
    code = "license_file_expired"
    default_message = "the license file has expired"


class LicenseFileWrongServer(LicenseFileRefused):
    code = "license_file_wrong_server"
    default_message = "the license file is bound to another server"


class LicenseFileSuperseded(LicenseFileRefused):
    code = "license_file_superseded"
    default_message = "a file of the same series with this or a higher sequence was imported before"


class LicenseFileLicenseConflict(LicenseFileRefused):
    code = "license_file_license_conflict"
    default_message = "a license in the file is already in force from another source"


class LicenseFileFromFuture(LicenseFileRefused):
    code = "license_file_from_future"
    default_message = (
        "the license file was issued later than the server's clock allows (licensing.clock_tolerance_hours)"
    )


class LicenseRequestUnknown(LicenseFileRefused):
    code = "license_request_unknown"
    default_message = "the license file answers an activation request this server did not make"


class LicenseRequestSpent(LicenseFileRefused):
    code = "license_request_spent"
    default_message = "the activation request this license file answers was used by another file already"


class NotGrantedByVendor(FloatsrvError):
    code = "not_granted_by_vendor"
    default_message = "in this vendor build only what a vendor-signed license file grants can be added"


class AuthError(FloatsrvError):
    code = "auth_error"


class Unauthenticated(AuthError):
    code = "unauthorized"
    default_message = "authentication required"


class InvalidToken(AuthError):
    code = "invalid_token"
    default_message = "the bearer token is not valid"


class TooManyRequests(AuthError):
    code = "too_many_requests"
    default_message = "too many failed logins; wait before trying again"


class LoginBusy(AuthError):
    code = "login_busy"
    default_message = "password checks are saturated; retry shortly"


class Forbidden(AuthError):
    code = "forbidden"
    default_message = "your role does not allow this"


class PasswordChangeRequired(Forbidden):
    code = "password_change_required"
    default_message = "change your temporary password first (POST /v1/me/password)"


class SeatOwnedByAnotherLogin(Forbidden):
    code = "seat_owned_by_another_login"
    default_message = "this seat was taken by another login; only that login or an admin may change it"


class StorageUnavailable(FloatsrvError):
    code = "storage_unavailable"
    default_message = "the database is not available; nothing was changed, retry later"


class StorageFull(StorageUnavailable):
    code = "storage_full"
    default_message = "the disk holding the database is full; nothing was changed, retry later"
