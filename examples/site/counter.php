<?php
// The whole stack in one page: served from the nfs docroot by any web node, it writes a row to the cluster's
// database and reads the count back. Each request adds one.
$cfg = require '/etc/herd/db.php';
$db = $cfg['databases']['site'];
$pdo = new PDO("mysql:host={$cfg['host']};dbname=site", $db['user'], $db['password'],
               [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
$pdo->exec('CREATE TABLE IF NOT EXISTS hits (id INT AUTO_INCREMENT PRIMARY KEY, node VARCHAR(64) NOT NULL,
            at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)');
$pdo->prepare('INSERT INTO hits (node) VALUES (?)')->execute([gethostname()]);
header('Content-Type: text/plain');
echo gethostname(), ' ', $pdo->query('SELECT COUNT(*) FROM hits')->fetchColumn(), "\n";
