"""Conversions to analytics and ad platforms: a call or a lead (with the visit it came from) sent
to GA4 (Measurement Protocol), Yandex Metrica (offline calls) and Google Ads (offline click
conversions, as an upload file).  One job per module:

* ``rules``      per-site settings and rules: which calls and lead states count, their value;
* ``subjects``   the pure ``Conversion`` record made from a call or lead plus its visit;
* ``builders``   pure payloads per platform (GA4 JSON, Metrica CSV rows, Google Ads CSV rows);
* ``candidates`` the database query that finds a site's conversions not yet logged;
* ``log``        the incremental log (one row per site, platform and subject);
* ``sender``     the HTTP side and the run that ties them together; ``export`` the CSV files.
"""

PLATFORMS = ("ga4", "metrica", "google_ads")
