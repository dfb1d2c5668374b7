"""The fields of an HTML form as a browser would submit them: for tests that start from the page a person sees."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit


@dataclass
class Field:
    name: str
    kind: str  # an <input>'s type, "textarea" or "select"
    value: str = ""
    checked: bool = False
    disabled: bool = False
    required: bool = False
    options: list[str] = field(default_factory=list)  # a select's values, or every value of a radio group
    selected: list[str] = field(default_factory=list)
    multiple: bool = False


@dataclass
class Form:
    action: str
    method: str
    enctype: str
    attrs: dict[str, str]
    fields: list[Field] = field(default_factory=list)

    def payload(self) -> list[tuple[str, str]]:
        """What a browser sends untouched: checked boxes and radios, each select's chosen option, no buttons."""
        out: list[tuple[str, str]] = []
        for f in self.fields:
            if f.disabled or not f.name or f.kind in ("submit", "button", "reset", "image", "file"):
                continue
            if f.kind in ("checkbox", "radio"):
                if f.checked:
                    out.append((f.name, f.value or "on"))
            elif f.kind == "select":
                chosen = f.selected or f.options[:1]
                out += [(f.name, v) for v in (chosen if f.multiple else chosen[:1])]
            else:
                out.append((f.name, f.value))
        return out

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)


class _Parser(HTMLParser):
    def __init__(self, base: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base, self.forms = base, []  # type: ignore[var-annotated]
        self._form: Form | None = None
        self._select: Field | None = None
        self._option: tuple[str | None, bool] | None = None
        self._option_text = ""
        self._textarea: Field | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v if v is not None else "") for k, v in attrs}
        if tag == "form":
            action = urlsplit(urljoin(self.base, a.get("action") or self.base))
            path = action.path + (f"?{action.query}" if action.query else "")
            self._form = Form(path, a.get("method", "get").lower(), a.get("enctype", ""), a)
            self.forms.append(self._form)
            return
        owner = self._form
        if "form" in a:  # <input form="id"> belongs to a form elsewhere on the page
            owner = next((f for f in self.forms if f.attrs.get("id") == a["form"]), owner)
        if owner is None:
            return
        common = {"disabled": "disabled" in a, "required": "required" in a}
        if tag == "input":
            owner.fields.append(
                Field(a.get("name", ""), a.get("type", "text").lower(), a.get("value", ""), "checked" in a, **common)
            )
        elif tag == "button" and a.get("name"):
            owner.fields.append(Field(a["name"], "submit", a.get("value", ""), **common))
        elif tag == "textarea":
            self._textarea = Field(a.get("name", ""), "textarea", "", **common)
            owner.fields.append(self._textarea)
        elif tag == "select":
            self._select = Field(a.get("name", ""), "select", multiple="multiple" in a, **common)
            owner.fields.append(self._select)
        elif tag == "option" and self._select is not None:
            self._option, self._option_text = (a.get("value"), "selected" in a), ""

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._textarea.value += data
        if self._option is not None:
            self._option_text += data

    def _end_option(self) -> None:
        if self._option is not None and self._select is not None:
            value = self._option[0] if self._option[0] is not None else self._option_text.strip()
            self._select.options.append(value)
            if self._option[1]:
                self._select.selected.append(value)
        self._option = None

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "textarea":
            if self._textarea is not None and self._textarea.value.startswith("\n"):
                self._textarea.value = self._textarea.value[1:]  # as browsers drop it
            self._textarea = None
        elif tag == "option":
            self._end_option()
        elif tag == "select":
            self._end_option()
            self._select = None


def forms(html: str, base: str) -> list[Form]:
    """Every form of the page; radio groups gather their values on each member."""
    parser = _Parser(base)
    parser.feed(html)
    parser.close()
    for form in parser.forms:
        groups: dict[str, list[str]] = {}
        for f in form.fields:
            if f.kind == "radio":
                groups.setdefault(f.name, []).append(f.value)
        for f in form.fields:
            if f.kind == "radio":
                f.options = groups[f.name]
    return parser.forms
