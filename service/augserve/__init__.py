"""augserve: image data augmentation as a service (the server side)."""

import os

# albumentations 2.0.8 asks the package index for a newer version on import unless this is set.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
