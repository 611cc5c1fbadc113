console.log("portal t9yhp25");
