# A Hetzner Cloud server object, as `hcloud server describe|list|create -o json` prints it (the
# API's server schema), as provision's node object. Server `status` values map to provision's
# states; anything new becomes "unknown".
def state:
  {"initializing": "pending", "starting": "pending", "rebuilding": "pending",
   "migrating": "pending", "running": "running", "stopping": "stopped", "off": "stopped",
   "deleting": "terminated"}[.status] // "unknown";

def node: {
  id: (.id | tostring),
  name: .name,
  state: state,
  public_ip: (.public_net.ipv4.ip // null),
  private_ip: ((.private_net // [])[0].ip // null),
  image: (.image.name // null),
  size: (.server_type.name // null),
  location: (.datacenter.location.name // .location.name // null),
  created: (.created // null),
  ssh_user: "root",
  tags: (.labels // {})
};
