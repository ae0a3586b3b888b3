// Helper for scripts/kafka.sh: waits until a Kafka cluster answers Admin
// requests, then creates topics with Kafka's own TopicCommand machinery
// (org.apache.kafka.tools.TopicCommand), all in ONE JVM instead of one JVM per
// topic.  Compiled once by the script into its cache directory.
//
// Usage: TopicsTool --bootstrap HOST:PORT [--command-config FILE]
//                   [--wait-ms N] [--replication-factor N] [--list]
//                   [NAME[:PARTITIONS[:compact]] ...]
//
// Exit status: 0 ok, 1 error, 2 usage error, 3 cluster not ready in time.
import java.io.FileInputStream;
import java.io.InputStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.tools.TopicCommand;

public final class TopicsTool {
    private TopicsTool() {
    }

    private static int usage(String msg) {
        System.err.println("TopicsTool: " + msg);
        System.err.println("usage: TopicsTool --bootstrap HOST:PORT [--command-config FILE]"
                + " [--wait-ms N] [--replication-factor N] [--list] [NAME[:PARTITIONS[:compact]] ...]");
        return 2;
    }

    public static void main(String[] args) {
        int rc;
        try {
            rc = run(args);
        } catch (Exception e) {
            Throwable t = e;
            while (t.getCause() != null && t instanceof java.util.concurrent.ExecutionException) {
                t = t.getCause();
            }
            System.err.println("TopicsTool: error: " + t);
            rc = 1;
        }
        System.out.flush();
        System.err.flush();
        // Admin threads may linger; exit explicitly.
        Runtime.getRuntime().halt(rc);
    }

    private static int run(String[] args) throws Exception {
        String bootstrap = null;
        String commandConfig = null;
        long waitMs = 30_000L;
        String replication = "1";
        boolean list = false;
        List<String> specs = new ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            switch (a) {
                case "--bootstrap":
                    if (++i >= args.length) return usage("--bootstrap needs a value");
                    bootstrap = args[i];
                    break;
                case "--command-config":
                    if (++i >= args.length) return usage("--command-config needs a value");
                    commandConfig = args[i].isEmpty() ? null : args[i];
                    break;
                case "--wait-ms":
                    if (++i >= args.length) return usage("--wait-ms needs a value");
                    waitMs = Long.parseLong(args[i]);
                    break;
                case "--replication-factor":
                    if (++i >= args.length) return usage("--replication-factor needs a value");
                    replication = args[i];
                    break;
                case "--list":
                    list = true;
                    break;
                default:
                    if (a.startsWith("--")) return usage("unknown option " + a);
                    specs.add(a);
            }
        }
        if (bootstrap == null) return usage("--bootstrap is required");

        Properties props = new Properties();
        if (commandConfig != null) {
            try (InputStream in = new FileInputStream(commandConfig)) {
                props.load(in);
            }
        }
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        int apiTimeout = (int) Math.max(1_000L, Math.min(waitMs, Integer.MAX_VALUE));
        props.putIfAbsent(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, Integer.toString(apiTimeout));
        props.putIfAbsent(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, Integer.toString(Math.min(apiTimeout, 10_000)));
        props.putIfAbsent(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "500");
        props.putIfAbsent(AdminClientConfig.RETRY_BACKOFF_MAX_MS_CONFIG, "500");

        Admin admin = Admin.create(props);
        // TopicService takes ownership of the Admin client and closes it.
        try (TopicCommand.TopicService service = new TopicCommand.TopicService(admin)) {
            // Readiness: the cluster must answer a metadata request within waitMs.
            long deadline = System.currentTimeMillis() + waitMs;
            java.util.Set<String> existing;
            while (true) {
                try {
                    long left = Math.max(1L, deadline - System.currentTimeMillis());
                    existing = new TreeSet<>(admin.listTopics().names().get(left, TimeUnit.MILLISECONDS));
                    break;
                } catch (java.util.concurrent.TimeoutException e) {
                    System.err.println("TopicsTool: cluster at " + bootstrap
                            + " did not answer within " + waitMs + " ms");
                    return 3;
                } catch (java.util.concurrent.ExecutionException e) {
                    if (System.currentTimeMillis() >= deadline) {
                        System.err.println("TopicsTool: cluster at " + bootstrap + " not ready: " + e.getCause());
                        return 3;
                    }
                    Thread.sleep(250);
                }
            }

            for (String spec : specs) {
                String[] parts = spec.split(":", -1);
                String name = parts[0];
                if (name.isEmpty() || parts.length > 3) {
                    return usage("bad topic spec '" + spec + "' (want NAME[:PARTITIONS[:compact]])");
                }
                String partitions = parts.length > 1 && !parts[1].isEmpty() ? parts[1] : "1";
                List<String> a = new ArrayList<>(List.of(
                        "--bootstrap-server", bootstrap,
                        "--create", "--if-not-exists",
                        "--topic", name,
                        "--partitions", partitions,
                        "--replication-factor", replication));
                if (parts.length > 2) {
                    if (!parts[2].equals("compact")) {
                        return usage("bad topic spec '" + spec + "': third field must be 'compact'");
                    }
                    a.add("--config");
                    a.add("cleanup.policy=compact");
                }
                TopicCommand.TopicCommandOptions opts =
                        new TopicCommand.TopicCommandOptions(a.toArray(new String[0]));
                opts.checkArgs();
                if (existing.contains(name)) {
                    continue; // --if-not-exists; nothing to say
                }
                service.createTopic(opts);
            }

            if (list) {
                TopicCommand.TopicCommandOptions opts = new TopicCommand.TopicCommandOptions(
                        new String[] {"--bootstrap-server", bootstrap, "--list"});
                opts.checkArgs();
                service.listTopics(opts);
            }
        }
        return 0;
    }
}
