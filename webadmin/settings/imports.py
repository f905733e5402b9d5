"""CSV imports with a preview: upload → table of rows to create/update and per-row errors → apply."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from astertrack.reporting import csv_import
from webadmin.db import get_session
from webadmin.security import roles_required
from webadmin.settings import bp

MAX_TEXT = 2 * 1024 * 1024


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


def _import_view(kind: str, parse, apply, template: str):
    db = get_session()
    if request.method == "GET":
        return render_template(template, rows=None, errors=None, text="")
    text = _uploaded_text()
    if text is None:
        return render_template(template, rows=None, errors=None, text=""), 400
    try:
        rows, errors = parse(text, db)
    except csv_import.CsvImportError as exc:
        flash(str(exc), "error")
        return render_template(template, rows=None, errors=None, text=text), 400
    if request.form.get("confirm") == "1":
        counts = apply(db, rows)
        db.commit()
        flash(_("Imported: %(created)s created, %(updated)s updated, %(skipped)s rows with errors skipped.",
                created=counts["create"], updated=counts["update"], skipped=len(errors)), "ok")
        return redirect(url_for("settings.numbers_import" if kind == "numbers" else "settings.costs_import"))
    return render_template(template, rows=rows, errors=errors, text=text)


@bp.route("/numbers/import", methods=["GET", "POST"])
@roles_required("admin")
def numbers_import():
    return _import_view("numbers", csv_import.parse_numbers_csv, csv_import.apply_numbers, "settings/numbers_import.html")


@bp.route("/costs/import", methods=["GET", "POST"])
@roles_required("admin")
def costs_import():
    return _import_view("costs", csv_import.parse_ad_costs_csv, csv_import.apply_ad_costs, "settings/costs_import.html")
