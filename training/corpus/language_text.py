"""Short everyday sentences per language for the synthetic language-ID voices.

Written for this corpus (no prompt transcripts of the real test speakers, so the held-out human
figure does not reward having seen the words). Thirty-six per language on the same everyday
topics; :func:`sentence_split` gives each sentence one split, so the near test hears new text.
"""

from __future__ import annotations

from training.corpus.generate import stable_tag

SENTENCES: dict[str, tuple[str, ...]] = {
    "en": (
        "The train to the city leaves in ten minutes.", "Could you open the window, please?",
        "My sister works at the hospital near the river.", "We are going to the beach on Saturday.",
        "The coffee is too hot to drink right now.", "I forgot my keys in the car again.",
        "Please leave a message after the tone.", "The meeting has been moved to Thursday morning.",
        "How much does this blue jacket cost?", "It has been raining all week long.",
        "The children are playing football in the garden.", "Turn left at the second traffic light.",
        "I would like a table for two people.", "Your call is important to us.",
        "The library closes at six in the evening.", "She bought fresh bread at the market.",
        "Can you tell me where the station is?", "The weather will be sunny tomorrow afternoon.",
        "He reads the newspaper every morning.", "We need more milk and some eggs.",
        "The flight was delayed because of the storm.", "Thank you very much for your help.",
        "My phone battery is almost empty.", "The museum is free on Sundays.",
        "Dinner will be ready in half an hour.", "I have lived here for five years.",
        "The doctor will see you in a moment.", "Our neighbours have a very noisy dog.",
        "Please enter your account number followed by the pound key.", "The shop on the corner sells good cheese.",
        "They are learning to play the piano.", "This road is closed for repairs.",
        "I usually walk to work when it is warm.", "The concert starts at eight o'clock.",
        "Do you want tea or coffee?", "The price of petrol went up again.",
    ),
    "es": (
        "El tren a la ciudad sale en diez minutos.", "¿Puedes abrir la ventana, por favor?",
        "Mi hermana trabaja en el hospital cerca del río.", "Vamos a la playa el sábado.",
        "El café está demasiado caliente para beberlo ahora.", "Olvidé las llaves en el coche otra vez.",
        "Por favor, deje su mensaje después de la señal.", "La reunión se ha cambiado al jueves por la mañana.",
        "¿Cuánto cuesta esta chaqueta azul?", "Ha llovido durante toda la semana.",
        "Los niños juegan al fútbol en el jardín.", "Gire a la izquierda en el segundo semáforo.",
        "Quisiera una mesa para dos personas.", "Su llamada es muy importante para nosotros.",
        "La biblioteca cierra a las seis de la tarde.", "Ella compró pan fresco en el mercado.",
        "¿Me puede decir dónde está la estación?", "Mañana por la tarde hará sol.",
        "Él lee el periódico todas las mañanas.", "Necesitamos más leche y algunos huevos.",
        "El vuelo se retrasó por la tormenta.", "Muchas gracias por su ayuda.",
        "La batería de mi teléfono está casi vacía.", "El museo es gratuito los domingos.",
        "La cena estará lista en media hora.", "Vivo aquí desde hace cinco años.",
        "El médico le atenderá en un momento.", "Nuestros vecinos tienen un perro muy ruidoso.",
        "Marque su número de cuenta seguido de la tecla almohadilla.", "La tienda de la esquina vende buen queso.",
        "Están aprendiendo a tocar el piano.", "Esta carretera está cerrada por obras.",
        "Normalmente voy andando al trabajo cuando hace calor.", "El concierto empieza a las ocho.",
        "¿Quieres té o café?", "El precio de la gasolina ha vuelto a subir.",
    ),
    "fr": (
        "Le train pour la ville part dans dix minutes.", "Pourriez-vous ouvrir la fenêtre, s'il vous plaît ?",
        "Ma sœur travaille à l'hôpital près de la rivière.", "Nous allons à la plage samedi.",
        "Le café est trop chaud pour le boire maintenant.", "J'ai encore oublié mes clés dans la voiture.",
        "Veuillez laisser un message après le signal sonore.", "La réunion a été déplacée à jeudi matin.",
        "Combien coûte cette veste bleue ?", "Il a plu toute la semaine.",
        "Les enfants jouent au football dans le jardin.", "Tournez à gauche au deuxième feu rouge.",
        "Je voudrais une table pour deux personnes.", "Votre appel est important pour nous.",
        "La bibliothèque ferme à six heures du soir.", "Elle a acheté du pain frais au marché.",
        "Pouvez-vous me dire où se trouve la gare ?", "Demain après-midi, il fera beau.",
        "Il lit le journal tous les matins.", "Il nous faut plus de lait et quelques œufs.",
        "Le vol a été retardé à cause de l'orage.", "Merci beaucoup pour votre aide.",
        "La batterie de mon téléphone est presque vide.", "Le musée est gratuit le dimanche.",
        "Le dîner sera prêt dans une demi-heure.", "J'habite ici depuis cinq ans.",
        "Le médecin va vous recevoir dans un instant.", "Nos voisins ont un chien très bruyant.",
        "Composez votre numéro de compte suivi de la touche dièse.", "Le magasin du coin vend du bon fromage.",
        "Ils apprennent à jouer du piano.", "Cette route est fermée pour travaux.",
        "D'habitude, je vais au travail à pied quand il fait chaud.", "Le concert commence à huit heures.",
        "Tu veux du thé ou du café ?", "Le prix de l'essence a encore augmenté.",
    ),
    "it": (
        "Il treno per la città parte tra dieci minuti.", "Potresti aprire la finestra, per favore?",
        "Mia sorella lavora all'ospedale vicino al fiume.", "Sabato andiamo al mare.",
        "Il caffè è troppo caldo per berlo adesso.", "Ho dimenticato di nuovo le chiavi in macchina.",
        "Si prega di lasciare un messaggio dopo il segnale acustico.",
        "La riunione è stata spostata a giovedì mattina.",
        "Quanto costa questa giacca blu?", "Ha piovuto per tutta la settimana.",
        "I bambini giocano a calcio in giardino.", "Giri a sinistra al secondo semaforo.",
        "Vorrei un tavolo per due persone.", "La sua chiamata è importante per noi.",
        "La biblioteca chiude alle sei di sera.", "Lei ha comprato il pane fresco al mercato.",
        "Mi può dire dov'è la stazione?", "Domani pomeriggio ci sarà il sole.",
        "Lui legge il giornale ogni mattina.", "Ci servono altro latte e qualche uovo.",
        "Il volo è stato ritardato a causa del temporale.", "Grazie mille per il suo aiuto.",
        "La batteria del mio telefono è quasi scarica.", "Il museo è gratuito la domenica.",
        "La cena sarà pronta tra mezz'ora.", "Abito qui da cinque anni.",
        "Il medico la riceverà tra un momento.", "I nostri vicini hanno un cane molto rumoroso.",
        "Digiti il numero del conto seguito dal tasto cancelletto.", "Il negozio all'angolo vende un buon formaggio.",
        "Stanno imparando a suonare il pianoforte.", "Questa strada è chiusa per lavori.",
        "Di solito vado al lavoro a piedi quando fa caldo.", "Il concerto inizia alle otto.",
        "Vuoi il tè o il caffè?", "Il prezzo della benzina è aumentato di nuovo.",
    ),
    "de": (
        "Der Zug in die Stadt fährt in zehn Minuten ab.", "Könnten Sie bitte das Fenster öffnen?",
        "Meine Schwester arbeitet im Krankenhaus am Fluss.", "Am Samstag fahren wir an den Strand.",
        "Der Kaffee ist noch zu heiß zum Trinken.", "Ich habe meine Schlüssel schon wieder im Auto vergessen.",
        "Bitte hinterlassen Sie eine Nachricht nach dem Signalton.", "Die Besprechung wurde auf Donnerstag verschoben.",
        "Wie viel kostet diese blaue Jacke?", "Es hat die ganze Woche geregnet.",
        "Die Kinder spielen im Garten Fußball.", "Biegen Sie an der zweiten Ampel links ab.",
        "Ich hätte gern einen Tisch für zwei Personen.", "Ihr Anruf ist uns wichtig.",
        "Die Bibliothek schließt um sechs Uhr abends.", "Sie hat auf dem Markt frisches Brot gekauft.",
        "Können Sie mir sagen, wo der Bahnhof ist?", "Morgen Nachmittag scheint die Sonne.",
        "Er liest jeden Morgen die Zeitung.", "Wir brauchen mehr Milch und ein paar Eier.",
        "Der Flug hatte wegen des Gewitters Verspätung.", "Vielen Dank für Ihre Hilfe.",
        "Der Akku meines Telefons ist fast leer.", "Sonntags ist der Eintritt ins Museum frei.",
        "Das Abendessen ist in einer halben Stunde fertig.", "Ich wohne seit fünf Jahren hier.",
        "Der Arzt ist gleich für Sie da.", "Unsere Nachbarn haben einen sehr lauten Hund.",
        "Geben Sie Ihre Kontonummer ein, gefolgt von der Rautetaste.", "Der Laden an der Ecke verkauft guten Käse.",
        "Sie lernen gerade Klavier spielen.", "Diese Straße ist wegen Bauarbeiten gesperrt.",
        "Wenn es warm ist, gehe ich meistens zu Fuß zur Arbeit.", "Das Konzert beginnt um acht Uhr.",
        "Möchtest du Tee oder Kaffee?", "Der Benzinpreis ist schon wieder gestiegen.",
    ),
    "ru": (
        "Поезд в город отправляется через десять минут.", "Не могли бы вы открыть окно, пожалуйста?",
        "Моя сестра работает в больнице у реки.", "В субботу мы поедем на пляж.",
        "Кофе слишком горячий, чтобы пить его сейчас.", "Я опять забыл ключи в машине.",
        "Пожалуйста, оставьте сообщение после сигнала.", "Встречу перенесли на утро четверга.",
        "Сколько стоит эта синяя куртка?", "Всю неделю шёл дождь.",
        "Дети играют в футбол в саду.", "На втором светофоре поверните налево.",
        "Я бы хотел столик на двоих.", "Ваш звонок очень важен для нас.",
        "Библиотека закрывается в шесть часов вечера.", "Она купила свежий хлеб на рынке.",
        "Скажите, пожалуйста, где находится вокзал?", "Завтра днём будет солнечно.",
        "Он читает газету каждое утро.", "Нам нужно больше молока и несколько яиц.",
        "Рейс задержали из-за грозы.", "Большое спасибо за вашу помощь.",
        "Батарея моего телефона почти разряжена.", "По воскресеньям вход в музей бесплатный.",
        "Ужин будет готов через полчаса.", "Я живу здесь уже пять лет.",
        "Врач примет вас через минуту.", "У наших соседей очень шумная собака.",
        "Введите номер счёта и нажмите решётку.", "В магазине на углу продают хороший сыр.",
        "Они учатся играть на пианино.", "Эта дорога закрыта на ремонт.",
        "Когда тепло, я обычно хожу на работу пешком.", "Концерт начинается в восемь часов.",
        "Хочешь чай или кофе?", "Цена на бензин снова выросла.",
    ),
}

LANGUAGES: tuple[str, ...] = tuple(sorted(SENTENCES))


def sentence_split(language: str, index: int, valid: int = 5, test: int = 5) -> str:
    """The split of sentence ``index`` of ``language``: a fixed seeded choice of ``valid`` and ``test``
    sentences per language, the rest train (the same for every voice)."""
    order = sorted(range(len(SENTENCES[language])), key=lambda i: stable_tag(f"{language}-{i}"))
    position = order.index(index)
    return "valid" if position < valid else "test" if position < valid + test else "train"
