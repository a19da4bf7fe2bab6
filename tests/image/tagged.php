<?php
// A test page, never in an image (tests/image/scenario.py puts it into the lab's docroot): a row per request
// with its ?tag=, so that a test can check afterwards that the row of every answered request is there.
$cfg = require '/etc/herd/db.php';
$db = $cfg['databases']['site'];
$pdo = new PDO("mysql:host={$cfg['host']};dbname=site", $db['user'], $db['password'],
               [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
$pdo->exec('CREATE TABLE IF NOT EXISTS tagged (id INT AUTO_INCREMENT PRIMARY KEY, node VARCHAR(64) NOT NULL,
            tag VARCHAR(64) NULL)');
$tag = isset($_GET['tag']) ? substr((string) $_GET['tag'], 0, 64) : null;
$pdo->prepare('INSERT INTO tagged (node, tag) VALUES (?, ?)')->execute([gethostname(), $tag]);
header('Content-Type: text/plain');
echo gethostname(), "\n";
