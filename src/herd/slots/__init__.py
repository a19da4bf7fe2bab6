"""A/B slots: two copies of a role's /usr, kernel and initramfs; GRUB boots one, and tries the other with boot
counting when a release is staged there.

Pure and self-contained: both the builder (it writes the first environment block and the GRUB script into an
image) and herdd (it stages, marks good, records failures) import it, so it imports nothing from herd.build or
herd.daemon, and nothing outside the standard library.
- grubenv.py: GRUB's environment block file, read and written byte for byte as GRUB and grub-editenv do.
- bootcount.py: the slot choice as a state machine (stage, what GRUB does at each boot, mark good, failed).
- grubcfg.py: the GRUB script fragment that does at boot exactly what bootcount says.
- blockwrite.py: a release's /usr written into the inactive slot, only the blocks that differ, then checked.
- verdict.py: good or back: after a boot, mark the tried slot good once its check passes, or give it up.
"""
