console.log("env-123 app bundle 3f2a9c1b");
