<?php
// The whole stack in one page: served from the nfs docroot by any web node, it counts the request in the
// cluster's database and reads the total back. One row per web node, updated (never a row per request: an
// anonymous GET must not be able to fill the db node's disk), so two web nodes writing through two Galera
// nodes never contend for one row.
$cfg = require '/etc/herd/db.php';
$db = $cfg['databases']['site'];
$pdo = new PDO("mysql:host={$cfg['host']};dbname=site", $db['user'], $db['password'],
               [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
$pdo->exec('CREATE TABLE IF NOT EXISTS counts (node VARCHAR(64) PRIMARY KEY, n BIGINT UNSIGNED NOT NULL)');
$pdo->prepare('INSERT INTO counts (node, n) VALUES (?, 1) ON DUPLICATE KEY UPDATE n = n + 1')
    ->execute([gethostname()]);
header('Content-Type: text/plain');
echo gethostname(), ' ', $pdo->query('SELECT SUM(n) FROM counts')->fetchColumn(), "\n";
