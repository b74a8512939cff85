"""nginx.conf templates: nginx-conf/<driver>/*.tmpl with %NAME% placeholders."""
import os
import re

from harness import CONF_DIR, MODULES_DIR


def render(name, **subst):
    """The template nginx-conf/<name> filled in: every %NAME% in subst is
    replaced in a single pass (substituted text is never scanned again; an
    unknown %NAME% stays). USER ("user root;" when run as root) and
    MODULES_DIR (NGINX_MODULES_DIR) are given unless subst has them."""
    with open(os.path.join(CONF_DIR, name)) as f:
        tmpl = f.read()
    values = {"USER": "user root;" if os.geteuid() == 0 else "", "MODULES_DIR": MODULES_DIR}
    values.update({k: str(v) for k, v in subst.items()})
    return re.sub(r"%([A-Z_]+)%", lambda m: values.get(m.group(1), m.group(0)), tmpl)
