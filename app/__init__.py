"""facelabel's local web page: try the model on one face image (`make serve`, `python -m app.server`).

`server` holds the Flask app; `templates/index.html` is its one page. Like the pipeline, it labels with the
shared face finding and alignment (`model.align.find_face_inputs`, as `--faces all` does) and
`model.saved.load_classifier` with mirror averaging (`model.mirror`, as the job where it finds faces), so a face
gets the same answer here as in a labelling run with the same model.
"""
