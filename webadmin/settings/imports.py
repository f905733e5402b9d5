"""CSV imports with a preview: upload → table of rows to create/update (what each update changes,
warnings for numbers that move) and per-row errors → apply.  The confirmation carries a digest of
the preview: if the data changed meanwhile, nothing is applied and the new preview is shown."""

from __future__ import annotations

import hashlib

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext

from astertrack.reporting import csv_import
from webadmin.db import get_session
from webadmin.security import roles_required
from webadmin.settings import bp

MAX_TEXT = 2 * 1024 * 1024
CHANGE_LABELS = {"site": _l("Site"), "source": _l("Source"), "pool": _l("Pool"), "label": _l("Label"),
                 "enabled": _l("Enabled"), "amount": _l("Amount"), "currency": _l("Currency"),
                 "monthly_rent": _l("Monthly rent"), "minute_price": _l("Per-minute price"),
                 "rented_from": _l("Rented from"), "rented_until": _l("Rented until")}
NUMBER_COLUMNS = [("number", _l("Number")), ("site_name", _l("Site")), ("source_name", _l("Source")),
                  ("pool_name", _l("Pool")), ("label", _l("Label")), ("enabled", _l("Enabled"))]
COST_COLUMNS = [("source_name", _l("Source")), ("day", _l("Date")), ("amount", _l("Amount")),
                ("currency", _l("Currency"))]

PRICE_COLUMNS = [("name", _l("Number or pool")), ("site_name", _l("Site")), ("monthly_rent", _l("Monthly rent")),
                 ("minute_price", _l("Per-minute price")), ("currency", _l("Currency")),
                 ("rented_from", _l("Rented from")), ("rented_until", _l("Rented until"))]
IMPORT_PAGES = {"numbers": "settings.numbers_import", "costs": "settings.costs_import",
                "prices": "settings.prices_import"}


def say(message: csv_import.Message | str) -> str:
    """A core message in the user's language (its English template is the catalog's msgid)."""
    if isinstance(message, csv_import.Message):
        return _(message.text, **message.args)
    return str(message)


def shown(value) -> str:
    """A preview cell: nothing as a dash, yes/no in words."""
    if value is None or value == "":
        return "—"
    if value is True:
        return _("yes")
    if value is False:
        return _("no")
    return str(value)


def _digest(rows) -> str:
    return hashlib.sha256(repr(rows).encode()).hexdigest()[:32]


def _uploaded_text() -> str | None:
    upload = request.files.get("file")
    if upload and upload.filename:
        data = upload.read(MAX_TEXT + 1)
    else:
        data = (request.form.get("text") or "").encode("utf-8")
    if len(data) > MAX_TEXT:
        flash(_("The file is larger than 2 MB; split it."), "error")
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            return data.decode("cp1251")  # spreadsheets saved in Russian Windows locales
        except UnicodeDecodeError:
            flash(_("The file is not UTF-8 or Windows-1251 text."), "error")
            return None


def _import_view(kind: str, parse, apply, template: str, columns):
    db = get_session()
    page = {"say": say, "shown": shown, "change_labels": CHANGE_LABELS, "columns": columns}
    if request.method == "GET":
        return render_template(template, rows=None, errors=None, text="", **page)
    text = _uploaded_text()
    if text is None:
        return render_template(template, rows=None, errors=None, text="", **page), 400
    try:
        rows, errors = parse(text, db)
    except csv_import.CsvImportError as exc:
        flash(say(exc.msg), "error")
        return render_template(template, rows=None, errors=None, text=text, **page), 400
    digest = _digest(rows)
    if request.form.get("confirm") == "1":
        if request.form.get("digest") != digest:
            flash(_("The data changed since the preview: check this new preview, then import."), "error")
            return render_template(template, rows=rows, errors=errors, text=text, digest=digest, **page), 409
        counts = apply(db, rows)
        db.commit()
        flash(_("Imported: %(created)s, %(updated)s, %(skipped)s.",
                created=ngettext("%(num)s record created", "%(num)s records created", counts["create"]),
                updated=ngettext("%(num)s record updated", "%(num)s records updated", counts["update"]),
                skipped=ngettext("%(num)s row with errors skipped", "%(num)s rows with errors skipped",
                                 len(errors))), "ok")
        return redirect(url_for(IMPORT_PAGES[kind]))
    return render_template(template, rows=rows, errors=errors, text=text, digest=digest, **page)


@bp.route("/numbers/import", methods=["GET", "POST"])
@roles_required("admin")
def numbers_import():
    return _import_view("numbers", csv_import.parse_numbers_csv, csv_import.apply_numbers,
                        "settings/numbers_import.html", NUMBER_COLUMNS)


@bp.route("/costs/import", methods=["GET", "POST"])
@roles_required("admin")
def costs_import():
    return _import_view("costs", csv_import.parse_ad_costs_csv, csv_import.apply_ad_costs,
                        "settings/costs_import.html", COST_COLUMNS)


@bp.route("/prices/import", methods=["GET", "POST"])
@roles_required("admin")
def prices_import():
    """Tracking numbers' and pools' rent and per-minute prices (#27)."""
    return _import_view("prices", csv_import.parse_prices_csv, csv_import.apply_prices,
                        "settings/prices_import.html", PRICE_COLUMNS)
