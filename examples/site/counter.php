<?php
// The whole stack in one page: served from the nfs docroot by any web node, it writes a row to the cluster's
// database and reads the count back. Each request adds one; ?tag=... is stored with the row, so a client can
// check later that the row of every answered request is there.
$cfg = require '/etc/herd/db.php';
$db = $cfg['databases']['site'];
$pdo = new PDO("mysql:host={$cfg['host']};dbname=site", $db['user'], $db['password'],
               [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
$pdo->exec('CREATE TABLE IF NOT EXISTS hits (id INT AUTO_INCREMENT PRIMARY KEY, node VARCHAR(64) NOT NULL,
            tag VARCHAR(64) NULL, at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)');
$tag = isset($_GET['tag']) ? substr((string) $_GET['tag'], 0, 64) : null;
$pdo->prepare('INSERT INTO hits (node, tag) VALUES (?, ?)')->execute([gethostname(), $tag]);
header('Content-Type: text/plain');
echo gethostname(), ' ', $pdo->query('SELECT COUNT(*) FROM hits')->fetchColumn(), "\n";
