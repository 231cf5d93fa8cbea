// Resolves NAME.localhost to the loopback address, as RFC 6761 asks and as
// macOS, systemd-resolved and browsers do; this machine's resolver (plain
// /etc/hosts) does not. The remote clients then reach the database NAME the
// way sqld names namespaces: by the first label of the host.
import dns from "node:dns";

const lookup = dns.lookup;
dns.lookup = function (host, options, callback) {
  if (typeof host === "string" && host.endsWith(".localhost")) host = "localhost";
  return lookup.call(this, host, options, callback);
};
