"""augserve: image data augmentation as a service (the server side). The map: docs/architecture.md."""
