"""Make the fine-tuning demonstration's data (issue 19): support questions answered in Acme's house style.

Every reply starts with a ticket line and ends with the same sign-off, which the base SmolLM2 never writes
on its own; a LoRA fine-tune should learn the format. The questions and answers are built here from small
lists, with a fixed seed, so the files are the same on every machine:

    python make_dataset.py            # writes train.jsonl (200 rows) and heldout.jsonl (40 rows)

Each row is {"question": ..., "answer": ..., "category": ...}. The style check a run's eval uses is
`STYLE`, a regular expression every answer matches.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

SIGN_OFF = "— Acme Support"
STYLE = re.compile(r"^Ticket [A-Z]{3}-\d{4} \| [a-z]+\n.+\n" + re.escape(SIGN_OFF) + r"$", re.DOTALL)

PRODUCTS = ["kettle", "toaster", "blender", "coffee maker", "air fryer", "rice cooker", "stand mixer", "juicer"]
ORDERS = [f"{letter}-{n}" for letter in "ABCDEFGH" for n in (12, 17, 23, 38, 41, 56)]
CATEGORIES: dict[str, tuple[list[str], list[str]]] = {
    "refund": (
        [
            "How do I get my money back for the {product} from order {order}?",
            "I want a refund for my {product}, order {order}.",
            "Can I return the {product} I bought in order {order}?",
        ],
        [
            "Refunds for order {order} go back to your original payment within five working days of the {product}"
            " reaching our warehouse. Print the free return label from your account page.",
            "We can refund the {product} from order {order}. Send it back with the prepaid label in your account;"
            " the money arrives within five working days after we receive it.",
        ],
    ),
    "shipping": (
        [
            "Where is my {product}? Order {order} has not arrived.",
            "When will order {order} with the {product} be delivered?",
            "My tracking for order {order} has not moved in three days.",
        ],
        [
            "Order {order} left our warehouse and the carrier's tracking link is in your confirmation email."
            " Deliveries take three to five working days; if the {product} is not with you by then, reply here.",
            "The {product} in order {order} is with the carrier. Tracking can pause for a day or two between"
            " depots; we will chase the carrier if nothing changes in two more days.",
        ],
    ),
    "broken": (
        [
            "My {product} stopped working after a week. Order {order}.",
            "The {product} from order {order} arrived damaged.",
            "The {product} makes a strange noise and then switches off (order {order}).",
        ],
        [
            "Sorry the {product} from order {order} let you down. It is under our two-year warranty: send us a"
            " photo of the fault and we will ship a replacement at no cost.",
            "A {product} that fails this early is covered. Reply with a photo and the order number {order}, and we"
            " will send a new one before you return the old one.",
        ],
    ),
    "account": (
        [
            "I can't log in to see order {order}.",
            "How do I change the delivery address for order {order}?",
            "My password reset email for my account never arrives. I need to check order {order}.",
        ],
        [
            "Use 'Forgot password' on the sign-in page; the link lasts one hour. If it does not arrive, check"
            " spam, then reply here and we will look at order {order} for you.",
            "You can change the address of order {order} from your account page until it ships. If it has"
            " shipped already, reply here and we will ask the carrier to redirect it.",
        ],
    ),
}


def reply(rng: random.Random, category: str, product: str, order: str) -> str:
    """An answer in the house style: ticket line, body, sign-off."""
    ticket = f"Ticket {''.join(rng.choice('ABCDEFGHJKLMNPRSTUVWXYZ') for _ in range(3))}-{rng.randint(1000, 9999)}"
    body = rng.choice(CATEGORIES[category][1]).format(product=product, order=order)
    return f"{ticket} | {category}\n{body}\n{SIGN_OFF}"


def rows(count: int, seed: int) -> list[dict[str, str]]:
    """`count` distinct question/answer rows."""
    rng = random.Random(seed)
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    while len(out) < count:
        category = rng.choice(list(CATEGORIES))
        product, order = rng.choice(PRODUCTS), rng.choice(ORDERS)
        question = rng.choice(CATEGORIES[category][0]).format(product=product, order=order)
        if question in seen:
            continue
        seen.add(question)
        answer = reply(rng, category, product, order)
        assert STYLE.match(answer), answer
        out.append({"question": question, "answer": answer, "category": category})
    return out


def main() -> None:
    folder = Path(__file__).resolve().parent
    everything = rows(240, seed=19)
    for name, part in (("train.jsonl", everything[:200]), ("heldout.jsonl", everything[200:])):
        with open(folder / name, "w") as f:
            for row in part:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"wrote {len(part)} rows to {folder / name}")


if __name__ == "__main__":
    main()
