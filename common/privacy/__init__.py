"""Privacy building blocks: standardise, pseudonymise, mask and generalise personal data.

Everything here is a pure Python function first. The Spark column functions at the
end wrap *the same* Python functions in pandas UDFs, so a value gets the same answer
in a unit test, a notebook and a job, and no rule is written twice.

Contract of the pure functions: they never raise on bad *data* (any value, any type,
any text) and return None when the input cannot be used. They do raise ``ValueError``
on bad *configuration* (an empty secret, a malformed country code, unsorted age bands),
because that is a programming error that must stop the job, not silently null a column.
No message ever quotes the personal data it was given.

Module imports are standard library only: the Python workers import this module to run
the UDFs, and pyspark/pandas are imported inside the functions that need them.

Formats handled are the ones the sample shop produces (see ``shoplake.generate``): mainland
mobiles typed as ``13800138000``, ``+86 138-0013-8000``, ``138 0013 8000``, ``86-13800138000``,
``0086 138 0013 8000``; 18-character resident ID numbers with an ISO 7064 MOD 11-2 check
character; IPv4 and IPv6 client addresses.
"""

from common.privacy.columns import (
    age_band_col,
    email_normalised,
    ip_prefix,
    phone_e164,
    phone_masked,
    pii_kinds,
    pseudonym_col,
    resident_id_birth_date,
    resident_id_gender,
    resident_id_valid,
    text_normalised,
)
from common.privacy.detect import (
    PII_KINDS,
    find_pii,
)
from common.privacy.masking import (
    DEFAULT_AGE_BANDS,
    IPV4_PREFIX,
    IPV6_PREFIX,
    age_band,
    mask_digits,
    mask_email,
    mask_phone,
    pseudonym,
    truncate_ip,
)
from common.privacy.normalise import (
    CN_COUNTRY_CODE,
    CN_MOBILE_RE,
    email_domain,
    normalise_email,
    normalise_phone,
    normalise_text,
)
from common.privacy.resident_id import (
    ID_CHECK_CHARS,
    ID_WEIGHTS,
    ResidentId,
    id_check_char,
    parse_resident_id,
)

__all__ = [
    "CN_COUNTRY_CODE",
    "CN_MOBILE_RE",
    "DEFAULT_AGE_BANDS",
    "ID_CHECK_CHARS",
    "ID_WEIGHTS",
    "IPV4_PREFIX",
    "IPV6_PREFIX",
    "PII_KINDS",
    "ResidentId",
    "age_band",
    "age_band_col",
    "email_domain",
    "email_normalised",
    "find_pii",
    "id_check_char",
    "ip_prefix",
    "mask_digits",
    "mask_email",
    "mask_phone",
    "normalise_email",
    "normalise_phone",
    "normalise_text",
    "parse_resident_id",
    "phone_e164",
    "phone_masked",
    "pii_kinds",
    "pseudonym",
    "pseudonym_col",
    "resident_id_birth_date",
    "resident_id_gender",
    "resident_id_valid",
    "text_normalised",
    "truncate_ip",
]
