"""The ground floor: error kinds, seeding, atomic writes, safe math and the distributed helpers every other folder
may use."""
