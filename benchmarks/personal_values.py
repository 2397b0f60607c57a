"""Fake personal values per second: synthforge.data.fake against Faker called once per value (issue 41).

    python -m benchmarks.personal_values [--rows 1000000] [--locales en_US,de_DE] [--faker-rows 20000]

For each locale and kind (one column alone; names with their e-mails as one table writes them), the seconds to
write ``--rows`` values with synthforge.data.fake (fresh rows from a numpy generator, the synthetic-row path),
and with ``--faker-rows`` calls of Faker's own method, scaled to ``--rows``; then the keyed pseudonyms of
``--rows`` distinct real values (the real-row path). Prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import polars as pl

from synthforge.data.fake import Draws, fake_columns, pseudonyms, run_secret

KINDS = {"person_name": "name", "email": "email", "phone": "phone_number", "street_address": "street_address",
         "city": "city", "postcode": "postcode", "iban": "iban", "ssn": "ssn"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--faker-rows", type=int, default=20_000)
    parser.add_argument("--locales", default="en_US,de_DE")
    args = parser.parse_args()
    from faker import Faker

    for locale in args.locales.split(","):
        fake_columns({"warm": "person_name"}, locale, Draws(10, rng=np.random.default_rng(0)), 0)  # lists loaded
        faker = Faker(locale)
        faker.seed_instance(0)
        tables = {kind: {kind: kind} for kind in KINDS} | {"person_name+email": {"n": "person_name", "e": "email"}}
        for label, kinds in tables.items():
            start = time.perf_counter()
            values = fake_columns(kinds, locale, Draws(args.rows, rng=np.random.default_rng(1)), 1)
            ours = time.perf_counter() - start
            first = next(iter(values.values()))
            line = {"locale": locale, "kinds": label, "rows": args.rows, "seconds": round(ours, 2),
                    "distinct_share": round(len(set(first.tolist())) / args.rows, 3)}
            if label in KINDS:
                method = getattr(faker, KINDS[label])
                start = time.perf_counter()
                for _ in range(args.faker_rows):
                    method()
                line["faker_per_call_seconds_scaled"] = round((time.perf_counter() - start) * args.rows
                                                              / args.faker_rows, 1)
            print(json.dumps(line), flush=True)
        real = pl.DataFrame({"name": [f"person {i}" for i in range(args.rows)],
                             "mail": [f"p{i}@example.org" for i in range(args.rows)]})
        start = time.perf_counter()
        pseudonyms(real, {"name": "person_name", "mail": "email"}, locale, run_secret(0), 0)
        print(json.dumps({"locale": locale, "kinds": "pseudonyms person_name+email", "rows": args.rows,
                          "seconds": round(time.perf_counter() - start, 2)}), flush=True)


if __name__ == "__main__":
    main()
