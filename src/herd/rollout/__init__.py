"""A release rolled through a running cluster, one node at a time, in the order the roles' redundancy allows.

Pure: the glue (a director's herdd) samples the cluster into a ClusterView, hands it to the Rollout with the
time, and carries out the Actions it returns; the Rollout decides. Level-triggered, so a director that takes over
can go on from the recorded state (Rollout.to_json) whatever it missed, and the whole order and its stop rules
test on a fake clock. Imports nothing from herd.daemon or herd.build.
- view.py: what the Rollout reads (each node's release, staged release, boot, role check, weight; the VIP
  holder, the NFS primary, Galera and DRBD) and the Actions it asks for.
- order.py: the preflight (what must be there before anything changes) and the rolling order.
- machine.py: the Rollout: stage everywhere, then each step with its deadline; stop at the first failure.
"""
