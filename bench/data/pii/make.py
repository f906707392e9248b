"""Writes pii.jsonl: sentences with planted identifiers of each type and person/place names, each labelled with its
character span. Seeded: `python bench/data/pii/make.py` rewrites the same file.

Identifiers are made valid the way real ones are (cards pass Luhn, IBANs their mod-97 check, SSNs avoid the area
numbers never issued, NINOs use allowed prefixes); names and places are drawn from lists of common ones across
several origins. A quarter of the sentences carry no PII but look-alike numbers (order numbers, dates, a card number
that fails Luhn, version strings), so precision is measured too.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 14
N = 400
OUT = Path(__file__).with_name("pii.jsonl")

FIRST = ["Marta", "James", "Aisha", "Wei", "Olga", "Carlos", "Priya", "Thomas", "Fatima", "Kenji", "Emma", "David",
         "Sofia", "Liam", "Nadia", "Lucas", "Hannah", "Omar", "Chloe", "Mateo", "Grace", "Ivan", "Elena", "Samuel"]
LAST = ["Quist", "Smith", "Khan", "Zhang", "Petrova", "Garcia", "Sharma", "Mueller", "Hassan", "Tanaka", "Johnson",
        "Brown", "Rossi", "Murphy", "Novak", "Silva", "Fischer", "Ali", "Martin", "Lopez", "Walker", "Ivanova"]
PLACES = ["Lisbon", "Chicago", "Nairobi", "Osaka", "Berlin", "Toronto", "Madrid", "Sydney", "Mumbai", "Boston",
          "Dublin", "Seattle", "Warsaw", "Lyon", "Denver", "Manchester", "Hanoi", "Santiago", "Oslo", "Texas",
          "California", "Bavaria", "Kenya", "Portugal"]
DOMAINS = ["example.com", "northwind.org", "mail.example.net", "acme.co.uk", "contoso.io"]


def luhn_digit(digits: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return str((10 - total % 10) % 10)


def card(r: random.Random, valid: bool = True) -> str:
    prefix = r.choice(["4", "51", "52", "37", "6011"])
    length = 15 if prefix == "37" else 16
    body = prefix + "".join(str(r.randrange(10)) for _ in range(length - len(prefix) - 1))
    check = luhn_digit(body)
    if not valid:
        check = str((int(check) + 1 + r.randrange(8)) % 10)
    digits = body + check
    if length == 15:
        return f"{digits[:4]} {digits[4:10]} {digits[10:]}"
    sep = r.choice([" ", "-", ""])
    return sep.join(digits[i:i + 4] for i in range(0, 16, 4))


def iban(r: random.Random) -> str:
    country, length = r.choice([("DE", 18), ("FR", 23), ("GB", 18), ("NL", 14), ("ES", 20), ("IT", 23)])
    if country == "GB":
        bban = r.choice(["NWBK", "BARC", "MIDL"]) + "".join(str(r.randrange(10)) for _ in range(14))
    elif country == "NL":
        bban = r.choice(["ABNA", "INGB", "RABO"]) + "".join(str(r.randrange(10)) for _ in range(10))
    elif country == "IT":
        bban = "X" + "".join(str(r.randrange(10)) for _ in range(22))
    else:
        bban = "".join(str(r.randrange(10)) for _ in range(length))
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    check = 98 - int(numeric) % 97
    raw = f"{country}{check:02d}{bban}"
    return " ".join(raw[i:i + 4] for i in range(0, len(raw), 4)) if r.random() < 0.6 else raw


def ssn(r: random.Random) -> str:
    area = r.choice([n for n in range(1, 900) if n != 666])
    return f"{area:03d}-{r.randrange(1, 100):02d}-{r.randrange(1, 10000):04d}"


def nino(r: random.Random) -> str:
    letters = "ABCEGHJKLMNPRSTWXYZ"
    prefix = r.choice(letters) + r.choice(letters.replace("O", ""))
    while prefix in ("BG", "GB", "NK", "KN", "TN", "NT", "ZZ"):
        prefix = r.choice(letters) + r.choice(letters)
    digits = "".join(str(r.randrange(10)) for _ in range(6))
    return f"{prefix} {digits[:2]} {digits[2:4]} {digits[4:]} {r.choice('ABCD')}"


def phone(r: random.Random) -> str:
    kind = r.randrange(4)
    if kind == 0:
        return f"+1 {r.randrange(201, 990)}-{r.randrange(200, 999)}-{r.randrange(1000, 9999)}"
    if kind == 1:
        return f"({r.randrange(201, 990)}) {r.randrange(200, 999)}-{r.randrange(1000, 9999)}"
    if kind == 2:
        return f"+44 20 {r.randrange(7000, 8999)} {r.randrange(1000, 9999)}"
    return f"+49 30 {r.randrange(1000000, 9999999)}"


def ip(r: random.Random) -> str:
    if r.random() < 0.8:
        return ".".join(str(r.randrange(1, 255)) for _ in range(4))
    return "2001:db8:" + ":".join(f"{r.randrange(65536):x}" for _ in range(6))


def email(r: random.Random, first: str, last: str) -> str:
    user = r.choice([f"{first}.{last}", f"{first[0]}{last}", f"{first}{r.randrange(10, 99)}"]).lower()
    return f"{user}@{r.choice(DOMAINS)}"


TEMPLATES = [
    "{PERSON} asked us to send the contract to {EMAIL} before Friday.",
    "Please call {PERSON} on {PHONE} about the delivery to {LOCATION}.",
    "The refund of 120 euros goes to card {CARD}, held by {PERSON}.",
    "Salary for {PERSON} is paid to IBAN {IBAN} every month.",
    "For the benefits enrolment, the employee's social security number is {NATIONAL_ID}.",
    "The login from {IP} was blocked after three failed attempts.",
    "{PERSON} moved from {LOCATION} to {LOCATION} last spring and can be reached at {PHONE}.",
    "Her national insurance number is {NATIONAL_ID} and her manager is {PERSON}.",
    "Invoices for the {LOCATION} office go to {EMAIL}; questions to {PERSON}.",
    "The server at {IP} forwards mail for {EMAIL}.",
    "Payment was made with {CARD} on the customer's request.",
    "Transfer the deposit to {IBAN} and tell {PERSON} once done.",
    "Our visitor from {LOCATION}, {PERSON}, left the phone number {PHONE} at reception.",
    "Dr. {PERSON} will present the results in {LOCATION} next week.",
]
NEGATIVES = [
    "Order {ORDER} shipped on 2024-03-14 and arrives within five days.",
    "Version {VERSION} fixes the crash when saving large files.",
    "The reference number {BADCARD} does not belong to any account.",
    "Room 214 seats 40 people; the projector code is 5512.",
    "The meeting moved from 10:30 to 14:00 because of the fire drill.",
    "Ticket {ORDER} was closed after the update to version {VERSION}.",
    "The warehouse holds 12,500 units of item 88-1042 in aisle 7.",
]


def fill(template: str, r: random.Random) -> dict:
    text, entities = "", []
    pos = 0
    person = None
    while True:
        i = template.find("{", pos)
        if i < 0:
            text += template[pos:]
            break
        j = template.index("}", i)
        text += template[pos:i]
        kind = template[i + 1:j]
        first, last = r.choice(FIRST), r.choice(LAST)
        if kind == "PERSON":
            value = f"{first} {last}" if r.random() < 0.8 else first
            person = (first, last)
        elif kind == "LOCATION":
            value = r.choice(PLACES)
        elif kind == "EMAIL":
            f, la = person or (first, last)
            value = email(r, f, la)
        elif kind == "PHONE":
            value = phone(r)
        elif kind == "CARD":
            value = card(r)
        elif kind == "IBAN":
            value = iban(r)
        elif kind == "NATIONAL_ID":
            value = ssn(r) if "social security" in template else nino(r)
        elif kind == "IP":
            value = ip(r)
        elif kind == "ORDER":
            value = f"#{r.randrange(100000, 999999)}"
        elif kind == "VERSION":
            value = f"{r.randrange(1, 9)}.{r.randrange(0, 20)}.{r.randrange(0, 9)}"
        elif kind == "BADCARD":
            value = card(r, valid=False)
        else:
            raise ValueError(kind)
        if kind not in ("ORDER", "VERSION", "BADCARD"):
            entities.append({"type": kind, "start": len(text), "end": len(text) + len(value), "value": value})
        text += value
        pos = j + 1
    return {"text": text, "entities": entities}


def main() -> None:
    r = random.Random(SEED)
    rows = []
    for i in range(N):
        template = r.choice(NEGATIVES) if i % 4 == 3 else r.choice(TEMPLATES)
        rows.append({"id": f"pii-{i:04d}", **fill(template, r)})
    OUT.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    print(f"wrote {len(rows)} sentences to {OUT}")


if __name__ == "__main__":
    main()
