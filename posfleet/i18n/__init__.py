"""Languages: which one a request gets, its gettext catalogues, and locale formatting.

English and Simplified Chinese are shipped. Texts are looked up in every catalogue (domain)
under ``posfleet/locale/<locale>/LC_MESSAGES`` merged; see ``docs/translations.md``.
"""

from posfleet.i18n.active_locale import (
    LazyText,
    active_locale,
    current_locale,
    gettext,
    lazy_gettext,
    mark,
    ngettext,
    npgettext,
    pgettext,
    set_locale,
    use_locale,
)
from posfleet.i18n.catalogue_loading import (
    LOCALE_DIR,
    forget_loaded_translations,
    load_translations,
    translations_for,
)
from posfleet.i18n.formatting import (
    format_age,
    format_date,
    format_duration,
    format_number,
    format_share,
    format_timestamp,
)
from posfleet.i18n.negotiation import (
    DEFAULT_LOCALE,
    ENGLISH,
    LOCALE_NAMES,
    SIMPLIFIED_CHINESE,
    SUPPORTED_LOCALES,
    html_lang,
    locale_name,
    negotiate,
)

__all__ = [
    "DEFAULT_LOCALE",
    "ENGLISH",
    "LOCALE_DIR",
    "LOCALE_NAMES",
    "SIMPLIFIED_CHINESE",
    "SUPPORTED_LOCALES",
    "LazyText",
    "active_locale",
    "current_locale",
    "forget_loaded_translations",
    "format_age",
    "format_date",
    "format_duration",
    "format_number",
    "format_share",
    "format_timestamp",
    "gettext",
    "html_lang",
    "lazy_gettext",
    "load_translations",
    "locale_name",
    "mark",
    "negotiate",
    "ngettext",
    "npgettext",
    "pgettext",
    "set_locale",
    "translations_for",
    "use_locale",
]
