package io.ringbroker.e2e;

import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

import org.junit.jupiter.api.extension.AfterEachCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * The {@link GroupMember}s one test started, closed (those still running)
 * after the test. A test class holds one as an instance field registered
 * with {@code @RegisterExtension}, so each test gets its own.
 */
final class GroupMembers implements AfterEachCallback {
    private final List<GroupMember> started = new ArrayList<>();
    private final boolean failOnCloseTimeout;

    private GroupMembers(boolean failOnCloseTimeout) {
        this.failOnCloseTimeout = failOnCloseTimeout;
    }

    /** A member that does not close in time after the test fails the test. */
    static GroupMembers failingOnCloseTimeout() {
        return new GroupMembers(true);
    }

    /**
     * A member that does not close in time after the test is only reported on
     * stderr, and the others are still closed.
     */
    static GroupMembers reportingCloseTimeout() {
        return new GroupMembers(false);
    }

    /** Starts a member (see {@link GroupMember#start}) and keeps it for closing. */
    GroupMember start(String name, Properties props, List<String> topics) {
        GroupMember m = GroupMember.start(name, props, topics);
        started.add(m);
        return m;
    }

    @Override
    public void afterEach(ExtensionContext context) {
        for (GroupMember m : started) {
            if (m.isAlive()) {
                try {
                    m.close();
                } catch (AssertionError e) {
                    if (failOnCloseTimeout) {
                        throw e;
                    }
                    System.err.println(e);
                }
            }
        }
    }
}
