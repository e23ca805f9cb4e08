-- A host's images while a rack copies one to it for a deploy (issue 12): the percent done; NULL
-- once the host holds it.
ALTER TABLE boot_resource_hosts ADD COLUMN copying smallint CHECK (copying BETWEEN 0 AND 100);
