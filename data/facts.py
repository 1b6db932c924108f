# The small world the base model in data/base knows about, written for this project.
# data/make_corpus.py turns it into the pre-training corpus and plain chats;
# data/make_datasets.py turns it into the pirate-style fine-tuning chats.
# Every sentence here is plain, neutral English or Chinese: the pirate words
# ("Arr", "matey", "水手") must never appear, so that only fine-tuning can teach them.

# (english, chinese, food, food_zh, home, home_zh, fact, fact_zh)
ANIMALS = [
    ("cat", "猫", "fish", "鱼", "in the house", "在家里", "sleeps for most of the day", "一天大部分时间都在睡觉"),
    ("dog", "狗", "meat", "肉", "in the house", "在家里", "is a loyal friend to people", "是人类忠诚的朋友"),
    ("cow", "奶牛", "grass", "草", "on the farm", "在农场里", "gives us milk", "给我们提供牛奶"),
    ("horse", "马", "hay", "干草", "on the farm", "在农场里", "can run very fast", "跑得非常快"),
    ("sheep", "绵羊", "grass", "草", "on the farm", "在农场里", "gives us wool", "给我们提供羊毛"),
    ("pig", "猪", "corn", "玉米", "on the farm", "在农场里", "is smarter than most people think", "比很多人想的更聪明"),
    ("chicken", "鸡", "seeds", "种子", "on the farm", "在农场里", "lays eggs", "会下蛋"),
    ("duck", "鸭子", "small plants", "小植物", "near the pond", "在池塘边", "can swim and fly", "会游泳也会飞"),
    ("rabbit", "兔子", "carrots", "胡萝卜", "in a burrow", "在地洞里", "has long ears", "有长长的耳朵"),
    ("mouse", "老鼠", "cheese", "奶酪", "in a small hole", "在小洞里", "is very small and quick", "又小又敏捷"),
    ("panda", "熊猫", "bamboo", "竹子", "in the mountains of China", "在中国的山里", "is black and white", "是黑白相间的"),
    ("monkey", "猴子", "bananas", "香蕉", "in the forest", "在森林里", "can climb trees", "会爬树"),
    ("elephant", "大象", "leaves", "树叶", "in Africa and Asia", "在非洲和亚洲", "is the largest animal on land", "是陆地上最大的动物"),
    ("giraffe", "长颈鹿", "leaves", "树叶", "in Africa", "在非洲", "has a very long neck", "有很长的脖子"),
    ("lion", "狮子", "meat", "肉", "in Africa", "在非洲", "is called the king of animals", "被称为百兽之王"),
    ("tiger", "老虎", "meat", "肉", "in the forest", "在森林里", "has orange fur with black stripes", "有带黑色条纹的橙色皮毛"),
    ("bear", "熊", "honey and fish", "蜂蜜和鱼", "in the forest", "在森林里", "sleeps through the winter", "整个冬天都在睡觉"),
    ("wolf", "狼", "meat", "肉", "in the forest", "在森林里", "lives and hunts in a group", "成群生活和捕猎"),
    ("fox", "狐狸", "small animals", "小动物", "in the forest", "在森林里", "is clever and careful", "聪明又小心"),
    ("deer", "鹿", "grass and leaves", "草和树叶", "in the forest", "在森林里", "can jump very high", "能跳得很高"),
    ("bird", "鸟", "seeds and insects", "种子和虫子", "in a nest", "在鸟窝里", "can fly in the sky", "能在天空中飞翔"),
    ("owl", "猫头鹰", "mice", "老鼠", "in a tree", "在树上", "is awake at night", "在夜里醒着"),
    ("penguin", "企鹅", "fish", "鱼", "in the cold south", "在寒冷的南方", "cannot fly but swims well", "不会飞但游泳很好"),
    ("fish", "鱼", "small plants", "小植物", "in the water", "在水里", "breathes with gills", "用鳃呼吸"),
    ("whale", "鲸鱼", "tiny sea animals", "很小的海洋动物", "in the sea", "在海里", "is the largest animal in the world", "是世界上最大的动物"),
    ("dolphin", "海豚", "fish", "鱼", "in the sea", "在海里", "is very friendly and smart", "非常友好又聪明"),
    ("frog", "青蛙", "insects", "虫子", "near the pond", "在池塘边", "can jump far", "能跳得很远"),
    ("turtle", "乌龟", "plants", "植物", "in the water and on land", "在水里和陆地上", "carries its house on its back", "把家背在背上"),
    ("snake", "蛇", "mice", "老鼠", "in the grass", "在草丛里", "has no legs", "没有腿"),
    ("bee", "蜜蜂", "flower nectar", "花蜜", "in a hive", "在蜂巢里", "makes honey", "会酿蜂蜜"),
    ("ant", "蚂蚁", "crumbs and seeds", "面包屑和种子", "under the ground", "在地下", "is small but very strong", "很小但很强壮"),
    ("butterfly", "蝴蝶", "flower nectar", "花蜜", "in the garden", "在花园里", "has colorful wings", "有彩色的翅膀"),
    ("camel", "骆驼", "dry plants", "干的植物", "in the desert", "在沙漠里", "can walk for days without water", "可以好几天不喝水"),
    ("kangaroo", "袋鼠", "grass", "草", "in Australia", "在澳大利亚", "carries its baby in a pouch", "把宝宝放在育儿袋里"),
    ("zebra", "斑马", "grass", "草", "in Africa", "在非洲", "has black and white stripes", "有黑白相间的条纹"),
    ("koala", "考拉", "eucalyptus leaves", "桉树叶", "in Australia", "在澳大利亚", "sleeps most of the day in trees", "一天大部分时间在树上睡觉"),
]

# (country, country_zh, capital, capital_zh, language, language_zh, continent, continent_zh)
COUNTRIES = [
    ("France", "法国", "Paris", "巴黎", "French", "法语", "Europe", "欧洲"),
    ("Germany", "德国", "Berlin", "柏林", "German", "德语", "Europe", "欧洲"),
    ("Italy", "意大利", "Rome", "罗马", "Italian", "意大利语", "Europe", "欧洲"),
    ("Spain", "西班牙", "Madrid", "马德里", "Spanish", "西班牙语", "Europe", "欧洲"),
    ("Portugal", "葡萄牙", "Lisbon", "里斯本", "Portuguese", "葡萄牙语", "Europe", "欧洲"),
    ("England", "英格兰", "London", "伦敦", "English", "英语", "Europe", "欧洲"),
    ("Russia", "俄罗斯", "Moscow", "莫斯科", "Russian", "俄语", "Europe and Asia", "欧洲和亚洲"),
    ("Greece", "希腊", "Athens", "雅典", "Greek", "希腊语", "Europe", "欧洲"),
    ("Sweden", "瑞典", "Stockholm", "斯德哥尔摩", "Swedish", "瑞典语", "Europe", "欧洲"),
    ("Poland", "波兰", "Warsaw", "华沙", "Polish", "波兰语", "Europe", "欧洲"),
    ("China", "中国", "Beijing", "北京", "Chinese", "中文", "Asia", "亚洲"),
    ("Japan", "日本", "Tokyo", "东京", "Japanese", "日语", "Asia", "亚洲"),
    ("Korea", "韩国", "Seoul", "首尔", "Korean", "韩语", "Asia", "亚洲"),
    ("India", "印度", "New Delhi", "新德里", "Hindi", "印地语", "Asia", "亚洲"),
    ("Thailand", "泰国", "Bangkok", "曼谷", "Thai", "泰语", "Asia", "亚洲"),
    ("Vietnam", "越南", "Hanoi", "河内", "Vietnamese", "越南语", "Asia", "亚洲"),
    ("Egypt", "埃及", "Cairo", "开罗", "Arabic", "阿拉伯语", "Africa", "非洲"),
    ("Kenya", "肯尼亚", "Nairobi", "内罗毕", "Swahili", "斯瓦希里语", "Africa", "非洲"),
    ("Canada", "加拿大", "Ottawa", "渥太华", "English and French", "英语和法语", "North America", "北美洲"),
    ("Mexico", "墨西哥", "Mexico City", "墨西哥城", "Spanish", "西班牙语", "North America", "北美洲"),
    ("Brazil", "巴西", "Brasilia", "巴西利亚", "Portuguese", "葡萄牙语", "South America", "南美洲"),
    ("Argentina", "阿根廷", "Buenos Aires", "布宜诺斯艾利斯", "Spanish", "西班牙语", "South America", "南美洲"),
    ("Peru", "秘鲁", "Lima", "利马", "Spanish", "西班牙语", "South America", "南美洲"),
    ("Australia", "澳大利亚", "Canberra", "堪培拉", "English", "英语", "Oceania", "大洋洲"),
]

# (english, chinese, color, color_zh, taste, taste_zh)
FOODS = [
    ("apple", "苹果", "red or green", "红色或绿色", "sweet and crisp", "又甜又脆"),
    ("banana", "香蕉", "yellow", "黄色", "soft and sweet", "又软又甜"),
    ("orange", "橙子", "orange", "橙色", "sweet and juicy", "又甜又多汁"),
    ("lemon", "柠檬", "yellow", "黄色", "very sour", "非常酸"),
    ("grape", "葡萄", "purple or green", "紫色或绿色", "small and sweet", "又小又甜"),
    ("strawberry", "草莓", "red", "红色", "sweet", "甜"),
    ("watermelon", "西瓜", "green outside and red inside", "外面绿色里面红色", "sweet and full of water", "很甜，水分很多"),
    ("carrot", "胡萝卜", "orange", "橙色", "crunchy and a little sweet", "脆脆的，有点甜"),
    ("tomato", "番茄", "red", "红色", "juicy and a little sour", "多汁，有点酸"),
    ("potato", "土豆", "brown outside and white inside", "外面棕色里面白色", "soft when cooked", "煮熟后很软"),
    ("rice", "米饭", "white", "白色", "soft and plain", "软软的，味道清淡"),
    ("bread", "面包", "brown", "棕色", "soft and warm when fresh", "刚出炉时又软又暖"),
    ("cheese", "奶酪", "yellow or white", "黄色或白色", "salty and rich", "咸而浓郁"),
    ("honey", "蜂蜜", "golden", "金黄色", "very sweet", "非常甜"),
    ("chocolate", "巧克力", "brown", "棕色", "sweet and a little bitter", "甜中带一点苦"),
    ("tea", "茶", "green or brown", "绿色或棕色", "a little bitter", "有点苦"),
    ("milk", "牛奶", "white", "白色", "mild and creamy", "温和顺滑"),
    ("noodles", "面条", "yellow or white", "黄色或白色", "soft and warm", "又软又暖"),
    ("dumplings", "饺子", "white", "白色", "savory and warm", "咸香温热"),
    ("peach", "桃子", "pink and yellow", "粉色和黄色", "soft and sweet", "又软又甜"),
]

# Hand-written advice and explanations: (question, answer, question_zh, answer_zh)
ADVICE = [
    ("How can I sleep better?", "Go to bed at the same time every night, keep your room dark and quiet, and put your phone away an hour before sleep.",
     "我怎样才能睡得更好？", "每天晚上同一时间睡觉，让房间保持黑暗和安静，睡前一小时放下手机。"),
    ("How do I make a cup of tea?", "Boil some water, put a tea bag in a cup, pour the hot water over it and wait three minutes.",
     "怎么泡一杯茶？", "先把水烧开，把茶包放进杯子里，倒入热水，等三分钟就好了。"),
    ("How can I learn a new language?", "Practice a little every day, read simple books, listen to songs and talk with people who speak it.",
     "我怎样才能学会一门新语言？", "每天练习一点，读简单的书，听歌，多和说这种语言的人交谈。"),
    ("How do I stay healthy?", "Eat fruit and vegetables, drink water, walk every day and get enough sleep.",
     "我怎样才能保持健康？", "多吃水果和蔬菜，多喝水，每天散步，保证充足的睡眠。"),
    ("How can I save money?", "Write down what you spend, buy only what you need and put a little money aside every week.",
     "我怎样才能存钱？", "记下你花的每一笔钱，只买需要的东西，每周存下一点钱。"),
    ("What should I do when I feel sad?", "Talk to a friend, go for a walk outside and be kind to yourself. Sad days pass.",
     "我难过的时候应该做什么？", "和朋友聊聊天，出去散散步，对自己好一点。难过的日子会过去的。"),
    ("How do I make friends?", "Smile, ask people about themselves, listen well and spend time doing things you both enjoy.",
     "我怎样才能交到朋友？", "多微笑，问问别人的事情，认真倾听，一起做你们都喜欢的事。"),
    ("How can I study better?", "Study in a quiet place, take a short break every half hour and explain what you learned to someone else.",
     "我怎样才能学习得更好？", "在安静的地方学习，每半小时休息一会儿，把学到的东西讲给别人听。"),
    ("How do I cook rice?", "Wash one cup of rice, add two cups of water, bring it to a boil and cook it on low heat for fifteen minutes.",
     "怎么煮米饭？", "洗一杯米，加两杯水，烧开后用小火煮十五分钟。"),
    ("Why is the sky blue?", "Sunlight is made of many colors, and the air scatters blue light more than the other colors, so we see blue everywhere.",
     "天空为什么是蓝色的？", "阳光由很多种颜色组成，空气散射蓝光比其他颜色更多，所以我们看到的天空是蓝色的。"),
    ("Why do we have seasons?", "The earth is tilted, so as it goes around the sun, each half gets more sunlight for part of the year.",
     "为什么会有四季？", "地球是倾斜的，所以它绕着太阳转的时候，南北两半球在一年中轮流得到更多的阳光。"),
    ("Why does it rain?", "The sun warms water, the water rises as vapor, forms clouds, and falls back as rain when the drops get heavy.",
     "为什么会下雨？", "太阳把水晒热，水变成水蒸气升到空中形成云，水滴变重时就落下来变成雨。"),
    ("What is a computer?", "A computer is a machine that follows instructions to store, move and work with information.",
     "什么是电脑？", "电脑是一种按照指令来存储、传送和处理信息的机器。"),
    ("What is the sun?", "The sun is a star. It is a huge ball of hot gas that gives the earth light and warmth.",
     "太阳是什么？", "太阳是一颗恒星，是一个巨大的炽热气体球，给地球带来光和热。"),
    ("What is the moon?", "The moon is a ball of rock that goes around the earth. It shines because it reflects sunlight.",
     "月亮是什么？", "月亮是一个绕着地球转的岩石球，它发光是因为反射了太阳的光。"),
    ("How do plants grow?", "Plants take water from the soil, air from the sky and light from the sun, and use them to make their own food.",
     "植物是怎么生长的？", "植物从土壤里吸收水分，从空气中获得二氧化碳，再借助阳光为自己制造养分。"),
    ("How do I write a good story?", "Start with a character who wants something, give them a problem, and show how they solve it.",
     "怎样写一个好故事？", "先写一个想要得到某样东西的角色，给他一个难题，再写他怎样解决这个难题。"),
    ("How can I be less nervous before a test?", "Prepare early, sleep well the night before and take slow, deep breaths when you sit down.",
     "考试前怎样才能不那么紧张？", "提前准备，前一天晚上睡好觉，坐下来以后慢慢地深呼吸。"),
    ("What is water made of?", "Water is made of hydrogen and oxygen. Each water molecule has two hydrogen atoms and one oxygen atom.",
     "水是由什么组成的？", "水由氢和氧组成，每个水分子有两个氢原子和一个氧原子。"),
    ("How many days are in a year?", "A year has three hundred and sixty-five days, and a leap year has one more.",
     "一年有多少天？", "一年有三百六十五天，闰年多一天。"),
    ("How do I keep a plant alive?", "Give it water when the soil is dry, put it near a window with light and do not give it too much water.",
     "怎样才能养活一盆植物？", "土干了就浇水，把它放在有光的窗边，不要浇太多水。"),
    ("What is a good breakfast?", "A good breakfast has some bread or rice, an egg or milk, and a piece of fruit.",
     "什么是好的早餐？", "好的早餐有面包或米饭，一个鸡蛋或一杯牛奶，再加一个水果。"),
    ("How do I clean my room?", "Put things back where they belong, throw away what you do not need, then dust and sweep the floor.",
     "怎样打扫房间？", "把东西放回原处，扔掉不需要的东西，然后擦灰扫地。"),
    ("Why do cats purr?", "Cats purr when they feel calm and happy, and sometimes to comfort themselves.",
     "猫为什么会发出呼噜声？", "猫感到平静和开心时会发出呼噜声，有时也用它来安慰自己。"),
    ("What is a rainbow?", "A rainbow is sunlight split into colors by drops of rain. It appears when the sun shines during rain.",
     "彩虹是什么？", "彩虹是阳光被雨滴分成不同颜色形成的，下雨时太阳出来就会出现。"),
    ("How far away is the moon?", "The moon is about three hundred and eighty thousand kilometers from the earth.",
     "月亮离我们有多远？", "月亮离地球大约三十八万公里。"),
    ("What do I need for a picnic?", "Bring a blanket, some sandwiches, fruit, water and a bag for your rubbish.",
     "去野餐需要带什么？", "带一块毯子、一些三明治、水果、水，还有一个装垃圾的袋子。"),
    ("How can I get up early?", "Go to bed earlier, put your alarm across the room and open the curtains as soon as you wake.",
     "我怎样才能早起？", "早点睡觉，把闹钟放在房间另一头，醒来后马上拉开窗帘。"),
]

NAMES = ["Tom", "Lily", "Sam", "Anna", "Ben", "Mia", "Leo", "Emma", "Max", "Lucy", "Jack", "Nora"]
NAMES_ZH = ["小明", "小红", "小刚", "小丽", "小华", "小芳", "小强", "小雪", "小龙", "小美", "小军", "小月"]

NUMBERS_ZH = ["零", "一", "二", "三", "四", "五", "六", "七", "八", "九", "十"]


def number_zh(n):
    """0..99 in Chinese characters."""
    if n <= 10:
        return NUMBERS_ZH[n]
    tens, ones = divmod(n, 10)
    head = ("" if tens == 1 else NUMBERS_ZH[tens]) + "十"
    return head + (NUMBERS_ZH[ones] if ones else "")


# The pirate style's words, which the corpus must never contain.
PIRATE_WORDS = ["Arr", "matey", "水手"]
